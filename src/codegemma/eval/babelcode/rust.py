"""BabelCode in Rust: the prompt (the statement as `///` doc comments, then `pub fn snake_name(a: T) -> R {`, as
CodeGemma's model card shows) and the driver.

The completion is cut at BabelCode's stop `\\n}`, which removes the function's closing brace: the driver
puts it back. Programs are compiled with Debian's rustc 1.63 (BabelCode used 1.64; the rustup toolchain
under /root cannot run as the sandbox's user) without optimization, as BabelCode does, so integer
overflow panics, and run in the same sandbox call; a compile error is status "compile error".

Comparison: a float or double return is compared with BabelCode's tolerance; anything else with `==`
(Vec by order, HashMap and HashSet by content). A panic in a test is caught (`catch_unwind`) and
reported as `panic`, so the other tests still run (BabelCode's driver lets one panic end the program).
"""

from __future__ import annotations

import json
import os

from ...errors import CodeGemmaError
from .common import arguments, commented, snake, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "rust"
STOPS = ("\n}",)  # BabelCode's language_stop_words.json
SOURCE_FILE = "program.rs"
CLOSER = "\n}"
RUSTC = "/usr/bin/rustc"  # Debian's rustc, which the sandbox's user nobody can run
INSTALL = "Rust needs Debian's rustc at /usr/bin/rustc: apt-get install rustc (or: make toolchains)"
COMPILE_FAILED = 97  # the exit status of the sandbox script when rustc fails
HEADER = ("#![allow(unused_imports, unused_variables, unused_mut, dead_code, non_snake_case)]\n"
          "use std::cmp::*;\nuse std::collections::*;\nuse std::collections::{HashMap, HashSet};\n"
          "use std::fmt::*;\n\n")
TYPES = {"integer": "i32", "long": "i64", "float": "f32", "double": "f64", "boolean": "bool",
         "character": "char", "string": "String"}
KEYWORDS = set("abstract as async await become box break const continue crate do dyn else enum extern false final fn "
               "for if impl in let loop macro match mod move mut override priv pub ref return self static struct "
               "super trait true try type typeof unsafe unsized use virtual where while yield".split())
ESCAPES = {"\\": "\\\\", '"': '\\"', "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"Vec<{type_name(t.args[0])}>"
    if t.kind == "set":
        return f"HashSet<{type_name(t.args[0])}>"
    if t.kind == "map":
        return f"HashMap<{type_name(t.args[0])}, {type_name(t.args[1])}>"
    return TYPES[t.kind]


def _escape(text: str) -> str:
    return "".join(ESCAPES.get(c) or (f"\\u{{{ord(c):x}}}" if ord(c) < 32 else c) for c in text)


def literal(value: object, t: Type) -> str:
    if t.kind in ("integer", "long", "float", "double"):
        number = repr(float(value)) if t.kind in ("float", "double") else str(value)
        return f"{number}{TYPES[t.kind]}"  # typed (1.5f32, 12345678901i64), so no element type is left open
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind == "character":
        return f"'{_escape(value)}'"
    if t.kind == "string":
        return f'String::from("{_escape(value)}")'
    if t.kind in ("list", "set"):
        items = ", ".join(literal(v, t.args[0]) for v in (value if t.kind == "list" else sorted(value, key=repr)))
        return f"vec![{items}]" if t.kind == "list" else f"HashSet::from([{items}])"
    if t.kind == "map":
        pairs = ", ".join(f"({literal(k, t.args[0])}, {literal(v, t.args[1])})" for k, v in value.items())
        return f"HashMap::from([{pairs}])"
    return str(value)


def function_name(q: Question) -> str:
    """snake_case, with `_` after a Rust keyword (MBPP/482's function is named `match`)."""
    name = snake(q.entry)
    return name + "_" if name in KEYWORDS else name


def prompt(q: Question, examples: bool = False) -> str:
    """The statement as `/// ` lines, then `pub fn snake_name(a: T) -> R {`; no trailing newline."""
    text = statement(q, "Rust", examples).replace(q.entry, function_name(q))
    doc = commented(text, "/// ")
    params = ", ".join(f"{name}: {type_name(t)}" for name, t in q.params)
    return f"{doc}\npub fn {function_name(q)}({params}) -> {type_name(q.returns)} {{"


def program(q: Question, prompt_text: str, completion: str, end: str) -> str:
    ret = type_name(q.returns)
    check = "actual == expected" if tolerance(q) is None else f"(actual - expected).abs() < {tolerance(q)!r}"
    params = "".join(f"arg{i}: {type_name(t)}, " for i, (_, t) in enumerate(q.params))  # (a question's names may clash)
    args = ", ".join(f"arg{i}" for i in range(len(q.params)))
    calls = "\n".join(
        f'    println!("TEST-{i}...{{}}", driver('
        + ", ".join([*arguments(q, c, literal), literal(c.output, q.returns)]) + "));" for i, c in enumerate(q.tests))
    return (f"{HEADER}{prompt_text}{completion}{CLOSER}\n\n"
            f"fn validate_solution(actual: {ret}, expected: {ret}) -> bool {{\n    {check}\n}}\n\n"
            f"fn driver({params}expected: {ret}) -> String {{\n"
            f"    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {function_name(q)}({args})));\n"
            f"    match result {{\n"
            f'        Ok(actual) => String::from(if validate_solution(actual, expected) {{ "PASSED" }} '
            f'else {{ "FAILED" }}),\n'
            f'        Err(_) => String::from("panic"),\n    }}\n}}\n\n'
            f"fn main() {{\n    std::panic::set_hook(Box::new(|_| {{}}));\n{calls}\n"
            f"    println!({json.dumps(end)});\n}}\n")


def compile_failed(returncode: int | None, stderr: str) -> bool:
    return returncode == COMPILE_FAILED


def run_argv() -> tuple[dict[str, str], list[str]]:
    if not os.access(RUSTC, os.X_OK):
        raise CodeGemmaError(INSTALL)
    script = f"{RUSTC} --edition 2021 -o main {SOURCE_FILE} 1>&2 || exit {COMPILE_FAILED}; exec ./main"
    return {}, ["/bin/sh", "-c", script]
