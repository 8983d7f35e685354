"""BabelCode in Kotlin: the prompt (the statement as a /** */ comment, then `fun camelName(a: T): R {`) and the
driver.

BabelCode's stop-word file has no Kotlin entry; we stop at `\\n}`, as for Rust and C++ (the prompt is
a top-level function whose closing brace sits at column 0), and the driver puts the brace back.
Programs are compiled with kotlinc (the npm package kotlin-compiler; Debian's kotlin is 1.3) to
classes and run with java, in the same sandbox call; kotlinc's JVM needs about 2 GiB of address space
and several seconds of CPU, so Kotlin gets a larger address space, CPU and wall allowance for the
compile (BabelCode runs `kotlinc -script`, a compile and run in one, with 30 s). `eval score` and `eval
run` compile several programs per kotlinc call, each in a package of its own (`batch`), which cuts the
compile's share of a program from about 5 s to under 1 s. A compile error is status "compile error".
Equality is Kotlin's `==` (lists in order, maps and sets by content).
"""

from __future__ import annotations

import json
import os

from ...errors import CodeGemmaError
from ..sandbox import Limits
from .common import arguments, camel, commented, statement, tolerance
from .java import JVM_FLAGS
from .questions import Question
from .schema import Type

NAME = "kotlin"
STOPS = ("\n}",)  # our choice: BabelCode's language_stop_words.json has no Kotlin entry
SOURCE_FILE = "program.kt"
CLOSER = "\n}"
KOTLIN_HOME = "/usr/lib/node_modules/kotlin-compiler"  # npm install -g kotlin-compiler
KOTLINC, STDLIB = f"{KOTLIN_HOME}/bin/kotlinc", f"{KOTLIN_HOME}/lib/kotlin-stdlib.jar"
JAVA = "/usr/bin/java"
INSTALL = ("Kotlin needs kotlinc at /usr/lib/node_modules/kotlin-compiler and java in /usr/bin: npm install -g "
           "kotlin-compiler and apt-get install default-jdk-headless (or: make toolchains)")
COMPILE_FAILED = 97  # the exit status of the sandbox script when kotlinc fails
COMPILE_SECONDS = 40  # added to the run's wall and CPU limits for kotlinc
KOTLINC_JVM = "-Xmx512m -Xss4m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=48m " \
              "-XX:CompressedClassSpaceSize=64m -XX:MaxMetaspaceSize=256m -XX:-UsePerfData"
HEADER = "import kotlin.math.*\nimport kotlin.text.*\n\n"
TYPES = {"integer": "Int", "long": "Long", "float": "Float", "double": "Double", "boolean": "Boolean",
         "character": "Char", "string": "String"}
ESCAPES = {"\\": "\\\\", '"': '\\"', "'": "\\'", "$": "\\$", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"ArrayList<{type_name(t.args[0])}>"
    if t.kind == "set":
        return f"MutableSet<{type_name(t.args[0])}>"
    if t.kind == "map":
        return f"Map<{type_name(t.args[0])}, {type_name(t.args[1])}>"
    return TYPES[t.kind]


def _escape(text: str) -> str:
    """Kotlin's escapes; anything outside printable ASCII as UTF-16 \\uXXXX units (a string is UTF-16)."""
    out = []
    for c in text:
        if c in ESCAPES:
            out.append(ESCAPES[c])
        elif 32 <= ord(c) < 127:
            out.append(c)
        else:
            data = c.encode("utf-16-be")
            out.extend(f"\\u{data[i] << 8 | data[i + 1]:04x}" for i in range(0, len(data), 2))
    return "".join(out)


def literal(value: object, t: Type) -> str:
    if t.kind == "float":
        return f"{float(value)!r}f"
    if t.kind == "double":
        return repr(float(value))
    if t.kind == "long":
        return f"{value}L"
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind == "character":
        return f"'{_escape(value)}'"
    if t.kind == "string":
        return f'"{_escape(value)}"'
    if t.kind == "list":
        return f"arrayListOf<{type_name(t.args[0])}>({', '.join(literal(v, t.args[0]) for v in value)})"
    if t.kind == "set":
        items = ", ".join(literal(v, t.args[0]) for v in sorted(value, key=repr))
        return f"hashSetOf<{type_name(t.args[0])}>({items})"
    if t.kind == "map":
        pairs = ", ".join(f"{literal(k, t.args[0])} to {literal(v, t.args[1])}" for k, v in value.items())
        return f"mapOf<{type_name(t.args[0])}, {type_name(t.args[1])}>({pairs})"
    return str(value)


def prompt(q: Question, examples: bool = False) -> str:
    """The statement as a /** */ comment, then `fun camelName(a: T): R {`; no trailing newline."""
    text = statement(q, "Kotlin", examples).replace(q.entry, camel(q.entry)).replace("*/", "*\\/")
    doc = commented(text, " * ")
    params = ", ".join(f"{name}: {type_name(t)}" for name, t in q.params)
    return f"/**\n{doc}\n */\nfun {camel(q.entry)}({params}): {type_name(q.returns)} {{"


def program(q: Question, prompt_text: str, completion: str, end: str, package: str = "") -> str:
    """The file that is run (with `package`, its declarations in that package, for compiling several at once)."""
    ret = type_name(q.returns)
    check = "actual == expected" if tolerance(q) is None else f"abs(actual - expected) < {tolerance(q)!r}"
    params = "".join(f"arg{i}: {type_name(t)}, " for i, (_, t) in enumerate(q.params))  # (a question's names may clash)
    args = ", ".join(f"arg{i}" for i in range(len(q.params)))
    calls = "\n".join(
        f'    println("TEST-{i}..." + driver('
        + ", ".join([*arguments(q, c, literal), literal(c.output, q.returns)]) + "))" for i, c in enumerate(q.tests))
    head = f"package {package}\n" if package else ""
    return (f"{head}{HEADER}{prompt_text}{completion}{CLOSER}\n\n"
            f"fun validateSolution(actual: {ret}, expected: {ret}): Boolean {{\n    return {check}\n}}\n\n"
            f"fun driver({params}expected: {ret}): String {{\n    try {{\n"
            f'        return if (validateSolution({camel(q.entry)}({args}), expected)) "PASSED" else "FAILED"\n'
            f"    }} catch (e: Throwable) {{\n        return e.javaClass.simpleName\n    }}\n}}\n\n"
            f"fun main() {{\n{calls}\n    println({json.dumps(end)})\n}}\n")


def compile_failed(returncode: int | None, stderr: str) -> bool:
    return returncode == COMPILE_FAILED


def limits(timeout: float) -> Limits:
    """kotlinc's JVM needs about 2 GiB of address space, CPU seconds and threads beyond a program's."""
    return Limits(timeout=timeout + COMPILE_SECONDS, cpu_seconds=10 + COMPILE_SECONDS, memory_mb=2048, processes=128)


def _kotlinc(sources: list[str]) -> str:
    """The shell command compiling `sources` into out/. JAVA_TOOL_OPTIONS too: kotlinc's script first runs
    `java -version`, which fails under 2 GiB without them."""
    if not (os.access(KOTLINC, os.X_OK) and os.access(JAVA, os.X_OK)):
        raise CodeGemmaError(INSTALL)
    return (f'JAVA_OPTS="{KOTLINC_JVM}" JAVA_TOOL_OPTIONS="{KOTLINC_JVM}" JAVACMD={JAVA} '
            f"{KOTLINC} -nowarn -no-reflect -d out {' '.join(sources)}")


def run_argv() -> tuple[dict[str, str], list[str]]:
    script = (f"{_kotlinc([SOURCE_FILE])} 1>&2 || exit {COMPILE_FAILED}; "
              f"exec {JAVA} {' '.join(JVM_FLAGS)} -cp out:{STDLIB} ProgramKt")
    return {}, ["/bin/sh", "-c", script]


# Batch compilation (eval score / eval run): each program in its own package pN, one kotlinc call for several.
def batch_source(package: str) -> str:
    return f"{package}/{SOURCE_FILE}"


def batch_compile_argv(sources: list[str]) -> list[str]:
    return ["/bin/sh", "-c", _kotlinc(sources)]


def batch_run_argv(package: str) -> list[str]:
    return [JAVA, *JVM_FLAGS, "-cp", f"out:{STDLIB}", f"{package}.ProgramKt"]


def batch_run_limits(timeout: float) -> Limits:
    """A compiled program's run: the default limits, but room for a JVM's threads beside a kotlinc's (both count
    against nobody's processes)."""
    return Limits(timeout=timeout, processes=128)


def batch_compile_limits(programs: int) -> Limits:
    """kotlinc's allowance (limits() above), plus a few seconds a program beyond the first."""
    seconds = COMPILE_SECONDS + 4 * (programs - 1)
    return Limits(timeout=seconds, cpu_seconds=seconds, memory_mb=2048, processes=128, output_bytes=1 << 20)
