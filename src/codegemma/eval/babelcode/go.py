"""BabelCode in Go: the prompt (the statement as `//` comments, then `func camelName(a T) R {`) and the driver.

The stops (`\\nfunc`, `struct`, `\\n// `) usually fire after the function's closing brace; where they cut
inside it (or generation ended early) the braces still open are closed. The file imports only what
BabelCode's Go header imports (fmt, reflect, math, sort: a completion cannot add imports), compiled
with Debian's Go 1.19 (`go build`, its standard library prebuilt, so a fresh build cache in the box
takes about 0.4 s) and run in the same sandbox call; a compile error is status "compile error".

Comparison: a float or double return is compared with BabelCode's tolerance; anything else by a
reflect walk in which a nil slice or map equals an empty one and map (and set, `map[T]bool`) key
order does not matter (BabelCode's `reflect.DeepEqual` tells a nil slice from an empty one, so a
solution that builds its result with `var r []int` and appends nothing fails). A panic in a test is
recovered and reported as its Go type (`runtime.boundsError`), so the other tests still run
(BabelCode's driver has no recover: one panic ends the program).
"""

from __future__ import annotations

import json
import os
import re

from ...errors import CodeGemmaError
from .common import arguments, camel, commented, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "go"
STOPS = ("\nfunc", "struct", "\n// ")  # BabelCode's language_stop_words.json
SOURCE_FILE = "program.go"
GO = "/usr/lib/go-1.19/bin/go"  # Debian's golang-go (the version BabelCode used)
INSTALL = "Go needs Debian's Go 1.19 at /usr/lib/go-1.19: apt-get install golang-go (or: make toolchains)"
COMPILE_FAILED = 97  # the exit status of the sandbox script when go build fails
HEADER = 'package main\n\nimport (\n    "fmt"\n    "math"\n    "reflect"\n    "sort"\n)\n\n'
TYPES = {"integer": "int", "long": "int64", "float": "float64", "double": "float64", "boolean": "bool",
         "character": "rune", "string": "string"}
KEYWORDS = set("break case chan const continue default defer else fallthrough for func go goto if import interface map "
               "package range return select struct switch type var".split())
RUNE_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
GO_TOKENS = re.compile(r'//[^\n]*|/\*.*?(?:\*/|$)|"(?:\\.|[^"\\\n])*"?|`[^`]*`?|'
                       r"'(?:\\.|[^'\\\n])*'?|[{}]", re.S)  # comments, strings, runes and braces
SAME_VALUE = """\
var _ = math.Abs
var _ = sort.Ints

func sameValue(a, b reflect.Value) bool {
    switch a.Kind() {
    case reflect.Slice:
        if a.Len() != b.Len() {
            return false
        }
        for i := 0; i < a.Len(); i++ {
            if !sameValue(a.Index(i), b.Index(i)) {
                return false
            }
        }
        return true
    case reflect.Map:
        if a.Len() != b.Len() {
            return false
        }
        entries := a.MapRange()
        for entries.Next() {
            other := b.MapIndex(entries.Key())
            if !other.IsValid() || !sameValue(entries.Value(), other) {
                return false
            }
        }
        return true
    default:
        return a.Interface() == b.Interface()
    }
}
"""


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"[]{type_name(t.args[0])}"
    if t.kind == "set":
        return f"map[{type_name(t.args[0])}]bool"
    if t.kind == "map":
        return f"map[{type_name(t.args[0])}]{type_name(t.args[1])}"
    return TYPES[t.kind]


def _rune(c: str) -> str:
    return "'" + (RUNE_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 32 else c)) + "'"


def literal(value: object, t: Type) -> str:
    if t.kind in ("float", "double"):
        return repr(float(value))
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind == "character":
        return _rune(value)
    if t.kind == "string":
        return json.dumps(value, ensure_ascii=False)  # Go's escapes for \\, ", \n, \t, \uXXXX are JSON's
    if t.kind == "list":
        return f"{type_name(t)}{{{', '.join(literal(v, t.args[0]) for v in value)}}}"
    if t.kind == "set":
        return f"{type_name(t)}{{{', '.join(literal(v, t.args[0]) + ': true' for v in sorted(value, key=repr))}}}"
    if t.kind == "map":
        pairs = ", ".join(f"{literal(k, t.args[0])}: {literal(v, t.args[1])}" for k, v in value.items())
        return f"{type_name(t)}{{{pairs}}}"
    return str(value)


def function_name(q: Question) -> str:
    """camelCase, with `_` after a Go keyword (MBPP/31's function is named `func`)."""
    name = camel(q.entry)
    return name + "_" if name in KEYWORDS else name


def prompt(q: Question, examples: bool = False) -> str:
    """The statement as `// ` lines, then `func camelName(a T) R {`; no trailing newline."""
    text = statement(q, "Go", examples).replace(q.entry, function_name(q))
    doc = commented(text, "// ")
    params = ", ".join(f"{name} {type_name(t)}" for name, t in q.params)
    return f"{doc}\nfunc {function_name(q)}({params}) {type_name(q.returns)} {{"


def open_braces(code: str) -> int:
    """How many `{` in Go code are not closed, outside comments, strings and runes."""
    return sum({"{": 1, "}": -1}.get(m.group(), 0) for m in GO_TOKENS.finditer(code))


def program(q: Question, prompt_text: str, completion: str, end: str) -> str:
    ret = type_name(q.returns)
    check = ("sameValue(reflect.ValueOf(actual), reflect.ValueOf(expected))" if tolerance(q) is None
             else f"math.Abs(actual-expected) < {tolerance(q)!r}")
    params = "".join(f"arg{i} {type_name(t)}, " for i, (_, t) in enumerate(q.params))  # (a question's names may clash)
    args = ", ".join(f"arg{i}" for i in range(len(q.params)))
    body = prompt_text + completion
    closer = "\n}" * max(0, open_braces(body))
    calls = "\n".join(
        f'    fmt.Println("TEST-{i}..." + driver('
        + ", ".join([*arguments(q, c, literal), literal(c.output, q.returns)]) + "))" for i, c in enumerate(q.tests))
    return (f"{HEADER}{body}{closer}\n\n{SAME_VALUE}\n"
            f"func validateSolution(actual {ret}, expected {ret}) bool {{\n    return {check}\n}}\n\n"
            f"func driver({params}expected {ret}) (result string) {{\n"
            f"    defer func() {{\n        if r := recover(); r != nil {{\n"
            f'            result = fmt.Sprintf("%T", r)\n        }}\n    }}()\n'
            f'    if validateSolution({function_name(q)}({args}), expected) {{\n        return "PASSED"\n    }}\n'
            f'    return "FAILED"\n}}\n\n'
            f"func main() {{\n{calls}\n    fmt.Println({json.dumps(end)})\n}}\n")


def compile_failed(returncode: int | None, stderr: str) -> bool:
    return returncode == COMPILE_FAILED


def run_argv() -> tuple[dict[str, str], list[str]]:
    """go build with a build cache in the box (Go 1.19's standard library is prebuilt), then the binary."""
    if not os.access(GO, os.X_OK):
        raise CodeGemmaError(INSTALL)
    script = (f'export GOCACHE="$HOME/.gocache" GOPATH="$HOME/gopath" GO111MODULE=off CGO_ENABLED=0 '
              f"GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOTELEMETRY=off GOMAXPROCS=2; "
              f"{GO} build -o main {SOURCE_FILE} 1>&2 || exit {COMPILE_FAILED}; exec ./main")
    return {}, ["/bin/sh", "-c", script]
