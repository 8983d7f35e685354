"""BabelCode in Java: the prompt (`class Solution {`, the statement as a /** */ comment, then the method) and
the driver.

The completion is cut at BabelCode's stop `\\n    }\\n`, which removes the method's closing brace: the
driver closes the method and the class. One program runs in Java's single-file source mode (`java
Program.java`, compiled in memory); `eval score` and `eval run` compile several per javac call, each in
a package of its own (`batch`). The JVM gets a small heap and code cache so it starts under the
sandbox's address-space limit. Equality is `equals` (lists, maps and sets compare by content).
"""

from __future__ import annotations

import json
import shutil

from ...errors import CodeGemmaError
from ..sandbox import Limits
from .common import arguments, camel, commented, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "java"
STOPS = ("\n    }\n",)  # BabelCode's language_stop_words.json ("Java")
SOURCE_FILE = "Program.java"
CLOSER = "\n    }\n}"
JVM_FLAGS = ("-Xmx256m", "-Xss8m", "-XX:+UseSerialGC", "-XX:ReservedCodeCacheSize=48m", "-XX:MaxMetaspaceSize=192m",
             "-XX:CompressedClassSpaceSize=64m", "-XX:TieredStopAtLevel=1", "-Xshare:auto")
TYPES = {"integer": "Integer", "long": "Long", "float": "Float", "double": "Double", "boolean": "Boolean",
         "character": "Character", "string": "String"}
HEADER = ("import java.util.*;\nimport java.util.function.*;\nimport java.util.stream.*;\nimport java.math.*;\n"
          "import static java.util.Map.entry;\n\n")


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"ArrayList<{type_name(t.args[0])}>"
    if t.kind == "set":
        return f"HashSet<{type_name(t.args[0])}>"
    if t.kind == "map":
        return f"HashMap<{type_name(t.args[0])}, {type_name(t.args[1])}>"
    return TYPES[t.kind]


def _string(text: str) -> str:
    return json.dumps(text)  # Java's escapes for \\, ", \n, \t and \\uXXXX are JSON's


def literal(value: object, t: Type) -> str:
    if t.kind == "float":
        return f"{float(value)!r}f"
    if t.kind == "double":
        return f"{float(value)!r}d"
    if t.kind == "long":
        return f"{value}L"
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind == "character":
        return "'" + _string(value)[1:-1].replace("'", "\\'") + "'"
    if t.kind == "string":
        return _string(value)
    if t.kind in ("list", "set"):
        items = value if t.kind == "list" else sorted(value, key=repr)
        return f"new {type_name(t)}(Arrays.asList({', '.join(literal(v, t.args[0]) for v in items)}))"
    if t.kind == "map":
        pairs = ", ".join(f"entry({literal(k, t.args[0])}, {literal(v, t.args[1])})" for k, v in value.items())
        return f"new {type_name(t)}(Map.ofEntries({pairs}))"
    return str(value)


def prompt(q: Question, examples: bool = False) -> str:
    """`class Solution {`, the statement as a /** */ comment, then `public R camelName(T a) {`."""
    text = statement(q, "Java", examples).replace(q.entry, camel(q.entry)).replace("*/", "*\\/")
    doc = commented(text, "     * ")
    params = ", ".join(f"{type_name(t)} {name}" for name, t in q.params)
    head = f"    public {type_name(q.returns)} {camel(q.entry)}({params}) {{"
    return f"class Solution {{\n    /**\n{doc}\n     */\n{head}"


def program(q: Question, prompt_text: str, completion: str, end: str, package: str = "") -> str:
    """The file that is run (with `package`, its classes in that package, for compiling several at once)."""
    ret = type_name(q.returns)
    check = "actual.equals(expected)" if tolerance(q) is None else f"Math.abs(actual - expected) < {tolerance(q)!r}"
    params = "".join(f"{type_name(t)} {name}, " for name, t in q.params)
    args = ", ".join(name for name, _ in q.params)
    calls = "\n".join(
        f'        System.out.println("TEST-{i}..." + driver('
        + ", ".join([*arguments(q, c, literal), literal(c.output, q.returns)])
        + "));" for i, c in enumerate(q.tests))
    head = f"package {package};\n" if package else ""
    return (f"{head}{HEADER}public class Program {{\n"
            f"    static boolean validateSolution({ret} actual, {ret} expected) {{\n        return {check};\n    }}\n\n"
            f"    static String driver({params}{ret} expected) {{\n        try {{\n"
            f"            {ret} actual = new Solution().{camel(q.entry)}({args});\n"
            f"            return actual != null && validateSolution(actual, expected) ? \"PASSED\" : \"FAILED\";\n"
            f"        }} catch (Throwable e) {{\n"
            f"            return e.getClass().getSimpleName();\n        }}\n    }}\n\n"
            f"    public static void main(String[] args) {{\n{calls}\n"
            f"        System.out.println(\"{end}\");\n    }}\n}}\n\n"
            f"{prompt_text}{completion}{CLOSER}\n")


def compile_failed(returncode: int | None, stderr: str) -> bool:
    """Single-file source mode ends with this line when the in-memory compilation fails."""
    return returncode != 0 and "error: compilation failed" in stderr


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CodeGemmaError("Java needs a JDK: apt-get install default-jdk-headless")
    return path


def run_argv() -> tuple[dict[str, str], list[str]]:
    _tool("javac")  # (batches compile with it; single-file source mode needs the JDK's compiler too)
    return {}, [_tool("java"), *JVM_FLAGS, SOURCE_FILE]


# Batch compilation (eval score / eval run): each program in its own package pN, one javac call for several.
def batch_source(package: str) -> str:
    return f"{package}/{SOURCE_FILE}"


def batch_compile_argv(sources: list[str]) -> list[str]:
    flags = [f"-J{flag}" for flag in JVM_FLAGS]
    return [_tool("javac"), *flags, "-nowarn", "-encoding", "UTF-8", "-Xmaxerrs", "100000", "-d", "out", *sources]


def batch_run_argv(package: str) -> list[str]:
    return [_tool("java"), *JVM_FLAGS, "-cp", "out", f"{package}.Program"]


def batch_run_limits(timeout: float) -> Limits:
    return Limits(timeout=timeout)  # (as in single-file source mode)


def batch_compile_limits(programs: int) -> Limits:
    """javac's JVM with the small-heap flags; about a second, plus a fraction of one a program."""
    seconds = 30 + programs
    return Limits(timeout=seconds, cpu_seconds=seconds, memory_mb=2048, processes=128, output_bytes=1 << 20)
