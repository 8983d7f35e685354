"""BabelCode in JavaScript: the prompt (the statement as a JSDoc comment, then the signature) and the driver.

Comparison: a float or double return is compared with BabelCode's tolerance; anything else by deep
equality in which object and Map key order does not matter and a Set equals the same members in any
order (BabelCode compares JSON.stringify outputs, where key order matters and every Map is `{}`).
"""

from __future__ import annotations

import json
import shutil

from .common import arguments, camel, commented, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "javascript"
STOPS = ("\nfunction ", "\n/*", "\n//")  # BabelCode's language_stop_words.json
SOURCE_FILE = "program.js"
DEEP_EQUAL = """\
function canonical(x) {
  if (x instanceof Map) x = Object.fromEntries(x);
  if (x instanceof Set) return {set: [...x].map(canonical).map(v => JSON.stringify(v)).sort()};
  if (Array.isArray(x)) return x.map(canonical);
  if (x !== null && typeof x === "object") {
    return Object.keys(x).sort().map(k => [k, canonical(x[k])]);
  }
  return x;
}
function deepEqual(a, b) { return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b)); }
"""


def literal(value: object, t: Type) -> str:
    if t.kind in ("float", "double"):
        return repr(float(value))
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind in ("character", "string"):
        return json.dumps(value, ensure_ascii=False)
    if t.kind == "list":
        return "[" + ", ".join(literal(v, t.args[0]) for v in value) + "]"
    if t.kind == "set":
        return "new Set([" + ", ".join(literal(v, t.args[0]) for v in sorted(value, key=repr)) + "])"
    if t.kind == "map":
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {literal(v, t.args[1])}"
                               for k, v in value.items()) + "}"
    return str(value)


def prompt(q: Question, examples: bool = False) -> str:
    """The statement as a /** */ comment, then `function name(args) {`; no trailing newline."""
    text = statement(q, NAME, examples).replace(q.entry, camel(q.entry)).replace("*/", "*\\/")
    doc = commented(text, " * ")
    return f"/**\n{doc}\n */\nfunction {camel(q.entry)}({', '.join(camel(n) for n, _ in q.params)}) {{"


def program(q: Question, prompt_text: str, completion: str, end: str) -> str:
    check = "deepEqual(actual, expected)" if tolerance(q) is None else f"Math.abs(actual - expected) < {tolerance(q)!r}"
    calls = "\n".join(
        f"  console.log(`TEST-{i}...${{driver([{', '.join(arguments(q, c, literal))}], "
        f"{literal(c.output, q.returns)})}}`);" for i, c in enumerate(q.tests))
    return (f"{prompt_text}{completion}\n\n{DEEP_EQUAL}"
            f"function validateSolution(actual, expected) {{ return {check}; }}\n"
            f"function driver(args, expected) {{\n  try {{\n    const actual = {camel(q.entry)}(...args);\n"
            f"    return validateSolution(actual, expected) ? 'PASSED' : 'FAILED';\n"
            f"  }} catch (e) {{\n    return (e && e.name) || 'Error';\n  }}\n}}\n"
            f"function main() {{\n{calls}\n  console.log({json.dumps(end)});\n}}\nmain();\n")


def run_argv() -> tuple[dict[str, str], list[str]]:
    node = shutil.which("node")
    if node is None:
        from ...errors import CodeGemmaError
        raise CodeGemmaError("JavaScript needs Node.js: apt-get install nodejs")
    return {}, [node, "program.js"]
