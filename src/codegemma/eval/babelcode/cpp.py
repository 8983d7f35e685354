"""BabelCode in C++: the prompt (the statement as a /** */ comment, then the signature) and the driver.

The completion is cut at BabelCode's stop `\\n}`, which removes the function's closing brace: the driver
puts it back. Programs are compiled with g++ (C++17, with bits/stdc++.h precompiled once: header_cache)
and run in the same sandbox call; a compile error is status "compile error". Equality is C++'s `==`
(vectors, maps and sets compare by value).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from ...errors import CodeGemmaError
from ..sandbox import box_root
from .common import arguments, camel, commented, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "cpp"
STOPS = ("\n}",)  # BabelCode's language_stop_words.json ("C++")
SOURCE_FILE = "program.cpp"
CLOSER = "\n}"
COMPILE_FAILED = 97  # the exit status of the sandbox script when g++ fails
TYPES = {"integer": "int", "long": "long long", "float": "float", "double": "double", "boolean": "bool",
         "character": "char", "string": "string"}
ESCAPES = {"\\": "\\\\", '"': '\\"', "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"vector<{type_name(t.args[0])}>"
    if t.kind == "set":
        return f"set<{type_name(t.args[0])}>"
    if t.kind == "map":
        return f"map<{type_name(t.args[0])}, {type_name(t.args[1])}>"
    return TYPES[t.kind]


def _escape(text: str) -> str:
    return "".join(ESCAPES.get(c) or (f"\\{ord(c):03o}" if ord(c) < 32 else c) for c in text)


def literal(value: object, t: Type) -> str:
    if t.kind == "float":
        return f"{float(value)!r}f"
    if t.kind == "double":
        return repr(float(value))
    if t.kind == "long":
        return f"{value}LL"
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind == "character":
        return f"'{_escape(value)}'"
    if t.kind == "string":
        return f'string("{_escape(value)}")'
    if t.kind in ("list", "set"):
        items = value if t.kind == "list" else sorted(value, key=repr)
        return f"{type_name(t)}{{{', '.join(literal(v, t.args[0]) for v in items)}}}"
    if t.kind == "map":
        pairs = ", ".join(f"{{{literal(k, t.args[0])}, {literal(v, t.args[1])}}}" for k, v in value.items())
        return f"{type_name(t)}{{{pairs}}}"
    return str(value)


def prompt(q: Question, examples: bool = False) -> str:
    """The statement as a /** */ comment, then `R camelName(T a) {`; no trailing newline."""
    text = statement(q, "C++", examples).replace(q.entry, camel(q.entry)).replace("*/", "*\\/")
    doc = commented(text, " * ")
    params = ", ".join(f"{type_name(t)} {name}" for name, t in q.params)
    return f"/**\n{doc}\n */\n{type_name(q.returns)} {camel(q.entry)}({params}) {{"


def program(q: Question, prompt_text: str, completion: str, end: str) -> str:
    ret = type_name(q.returns)
    check = "actual == expected" if tolerance(q) is None else f"abs(actual - expected) < {tolerance(q)!r}"
    params = "".join(f"{type_name(t)} {name}, " for name, t in q.params)
    args = ", ".join(name for name, _ in q.params)
    calls = "\n".join(
        f'    cout << "TEST-{i}..." << driver('
        + ", ".join([*arguments(q, c, literal), literal(c.output, q.returns)])
        + ") << endl;" for i, c in enumerate(q.tests))
    return (f"#include <bits/stdc++.h>\nusing namespace std;\n\n{prompt_text}{completion}{CLOSER}\n\n"
            f"bool validateSolution({ret} actual, {ret} expected) {{\n    return {check};\n}}\n\n"
            f"string driver({params}{ret} expected) {{\n    try {{\n"
            f"        {ret} actual = {camel(q.entry)}({args});\n"
            f"        return validateSolution(actual, expected) ? \"PASSED\" : \"FAILED\";\n"
            f"    }} catch (const exception& e) {{\n        return \"exception\";\n"
            f"    }} catch (...) {{\n        return \"UNKNOWN_ERROR\";\n    }}\n}}\n\n"
            f"int main() {{\n{calls}\n    cout << \"{end}\" << endl;\n    return 0;\n}}\n")


def compile_failed(returncode: int | None, stderr: str) -> bool:
    return returncode == COMPILE_FAILED


def run_argv(precompiled_header: bool = True) -> tuple[dict[str, str], list[str]]:
    gpp = shutil.which("g++")
    if gpp is None:
        raise CodeGemmaError("C++ needs g++: apt-get install g++")
    cache = header_cache(gpp) if precompiled_header else None
    include = f"-I {cache} " if cache else ""
    script = f"{gpp} -std=c++17 -O0 {include}-o main {SOURCE_FILE} 1>&2 || exit {COMPILE_FAILED}; exec ./main"
    return {}, ["/bin/sh", "-c", script]


_header_lock = threading.Lock()


def header_cache(gpp: str) -> Path | None:
    """A folder holding bits/stdc++.h.gch, precompiled once with the programs' flags (-std=c++17 -O0) by this
    g++: given as -I, g++ takes the .gch for the header (about 0.5 s a compile instead of 1.5 s here) and
    falls back to the header itself if it does not fit. Built by the parent from the system header (no
    program's code), in the sandbox's root-owned folder, so programs can read it and not change it.
    None if it cannot be built."""
    version = subprocess.run([gpp, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    folder = box_root() / "cache" / f"cpp-gch-{version}-c++17-O0"
    target = folder / "bits" / "stdc++.h.gch"
    with _header_lock:
        if target.is_file():
            return folder
        target.parent.mkdir(parents=True, exist_ok=True)
        for path in (folder.parent, folder, target.parent):
            path.chmod(0o755)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            wrapper = Path(work, "stdc++.h")
            wrapper.write_text("#include <bits/stdc++.h>\n")
            built = subprocess.run([gpp, "-std=c++17", "-O0", "-x", "c++-header", str(wrapper), "-o", f"{wrapper}.gch"],
                                   capture_output=True)
            if built.returncode != 0:
                return None
            os.chmod(f"{wrapper}.gch", 0o644)
            os.replace(f"{wrapper}.gch", target)  # (whole or not at all, for other processes)
    return folder
