"""BabelCode in Python: the prompt (annotated signature, then the statement as a docstring) and the driver."""

from __future__ import annotations

from .common import arguments, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "python"
STOPS = ("\ndef", "\n#", "\nif", "\nclass")  # BabelCode's language_stop_words.json
HEADER = ("import array\nimport bisect\nimport collections\nimport datetime\nimport functools\nimport heapq\n"
          "import itertools\nimport math\nimport queue\nimport re\nimport string\nimport sys\n"
          "from typing import Any, Dict, List, Optional, Set, Tuple\n\n")
TYPES = {"integer": "int", "long": "int", "float": "float", "double": "float", "boolean": "bool",
         "character": "str", "string": "str"}


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"List[{type_name(t.args[0])}]"
    if t.kind == "set":
        return f"Set[{type_name(t.args[0])}]"
    if t.kind == "map":
        return f"Dict[{type_name(t.args[0])}, {type_name(t.args[1])}]"
    return TYPES[t.kind]


def literal(value: object, t: Type) -> str:
    if t.kind in ("float", "double"):
        return repr(float(value))
    if t.kind == "list":
        return "[" + ", ".join(literal(v, t.args[0]) for v in value) + "]"
    if t.kind == "set":
        return "{" + ", ".join(literal(v, t.args[0]) for v in sorted(value, key=repr)) + "}" if value else "set()"
    if t.kind == "map":
        return "{" + ", ".join(f"{literal(k, t.args[0])}: {literal(v, t.args[1])}" for k, v in value.items()) + "}"
    return repr(value)


def prompt(q: Question, examples: bool = False) -> str:
    """`def f(a: T) -> R:` and the statement as an indented docstring; no trailing newline."""
    params = ", ".join(f"{name}: {type_name(t)}" for name, t in q.params)
    doc = "\n".join(("    " + line).rstrip() for line in statement(q, NAME, examples).splitlines())
    return f'def {q.entry}({params}) -> {type_name(q.returns)}:\n    """\n{doc}\n    """'


def program(q: Question, prompt_text: str, completion: str, end: str) -> str:
    """The file that is run: header, prompt and completion, then a driver printing TEST-<i>...<RESULT>."""
    check = "actual == expected" if tolerance(q) is None else f"abs(actual - expected) < {tolerance(q)!r}"
    lines = []
    for i, c in enumerate(q.tests):
        call = ", ".join([*arguments(q, c, literal), f"expected={literal(c.output, q.returns)}"])
        lines.append(f"    print('TEST-{i}...' + driver({call}), flush=True)")
    calls = "\n".join(lines)
    return (f"{HEADER}{prompt_text}{completion}\n\n\n"
            f"def validate_solution(actual, expected):\n    return {check}\n\n\n"
            f"def driver(*args, expected):\n    try:\n        actual = {q.entry}(*args)\n"
            f"    except Exception as exc:\n        return type(exc).__name__\n"
            f"    return 'PASSED' if validate_solution(actual, expected) else 'FAILED'\n\n\n"
            f"if __name__ == '__main__':\n{calls}\n    print({end!r})\n")


def run_argv() -> tuple[dict[str, str], list[str]]:
    """The sandbox's Python (run inside its already started interpreter, as `python -I -X utf8 program.py`)."""
    from ..sandbox import PYTHON
    return {}, [PYTHON, "program.py"]


SOURCE_FILE = "program.py"
