"""Practice exercises: MBPP and HumanEval as shipped, grouped by topic and ordered by a difficulty measured
on each reference solution's syntax tree; learners add their own (statement + tests).

Topic: the first rule in TOPIC_RULES that the reference solution (its imports, calls and constructs) or,
for strings only, the statement matches. Difficulty: `difficulty_score`, a weighted count of what the
reference solution is made of (lines, loops and their nesting, branches, comprehensions, recursion,
imports, helper functions); levels 1-5 are its quintiles over the whole catalogue.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from ..errors import CodeGemmaError

LEVELS = ("1 warm-up", "2 easy", "3 medium", "4 hard", "5 challenge")
CUSTOM_TOPIC = "your exercises"
# Exercises whose reference solution fails its own tests here, and why (checked by a slow test); the page says so.
BROKEN = {
    "mbpp-341": "the reference returns tuple(set), whose order is not the sorted order the test expects",
    "mbpp-367": "the tests use `root`, built by MBPP's test_setup_code, which BabelCode's copy of MBPP omits",
    "mbpp-927": "the tests use `root`, built by MBPP's test_setup_code, which BabelCode's copy of MBPP omits",
    "mbpp-596": "the tests compare sys.getsizeof with sizes of another Python build",
    "mbpp-642": "the reference keeps each row's order, but the tests expect some rows sorted",
}
# Exercises whose reference needs longer than the default per-test limit (grading.TEST_TIMEOUT), in seconds.
TIME_LIMITS = {
    "mbpp-123": 30.0,  # amicable numbers below 9999 by trial division: about 4 s on one core
}


class ExerciseError(CodeGemmaError, ValueError):
    """An exercise that cannot be built: no tests, tests that do not parse, an unknown id."""


@dataclass(frozen=True)
class Exercise:
    id: str  # "mbpp-12", "humaneval-0", "custom-3"
    source: str  # mbpp, humaneval, custom
    title: str
    statement: str
    starter: str  # what the editor starts with
    tests: tuple[str, ...]  # each one assertion (a top-level statement), graded on its own
    setup: str = ""  # run after the learner's code, before each test (HumanEval: candidate = f, helpers)
    reference: str = ""  # a solution that passes (empty for learners' exercises without one)
    entry_point: str = ""
    topic: str = ""
    score: int = 0  # difficulty_score of the reference solution
    level: int = 0  # 1..5, the score's quintile over the catalogue (0: unknown)
    note: str = ""  # a known problem with the exercise itself (BROKEN)
    time_limit: float = 0.0  # seconds per test; 0: grading's default

    def summary(self) -> dict:
        return {"id": self.id, "source": self.source, "title": self.title, "topic": self.topic, "level": self.level,
                "level_name": LEVELS[self.level - 1] if self.level else "unrated", "score": self.score,
                "tests": len(self.tests), "note": self.note}

    def public(self) -> dict:
        """What the page shows: everything but the reference solution."""
        return {**self.summary(), "statement": self.statement, "starter": self.starter, "test_code": list(self.tests)}


# (topic, test on the reference's features); the first that matches wins.
TOPIC_RULES: tuple[tuple[str, object], ...] = (
    ("regular expressions", lambda f: "re" in f["imports"]),
    ("recursion", lambda f: f["recursive"]),
    ("dictionaries and sets", lambda f: f["dicts"] or bool({"Counter", "defaultdict", "set"} & f["calls"])),
    ("sorting and searching", lambda f: bool({"sorted", "sort", "heapq", "bisect", "min", "max"}
                                             & (f["calls"] | f["imports"]))),
    ("strings", lambda f: f["strings"]),
    ("math and numbers", lambda f: "math" in f["imports"] or (f["arith"] >= 3 and not f["loops"])),
    ("lists and loops", lambda f: f["loops"] > 0 or f["comprehensions"] > 0),
    ("basics", lambda f: True),
)
_STRING_WORDS = re.compile(r"\b(string|strings|character|characters|word|words|vowel|vowels|substring|"
                           r"uppercase|lowercase|letters?|palindrome)\b", re.I)
_STRING_CALLS = {"split", "join", "replace", "strip", "upper", "lower", "isalpha", "isdigit", "startswith", "endswith",
                 "ord", "chr", "find", "capitalize", "title", "isupper", "islower"}


def features(solution: str, statement: str = "") -> dict:
    """What a solution is made of, counted on its syntax tree (tolerates tabs and stray indentation)."""
    tree = _parse(solution)
    nodes = list(ast.walk(tree))

    def count(*kinds: type) -> int:
        return sum(isinstance(n, kinds) for n in nodes)

    defs = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    calls = {_name(n.func) for n in nodes if isinstance(n, ast.Call)} - {""}
    imports = {a.name.split(".")[0] for n in nodes if isinstance(n, ast.Import) for a in n.names}
    imports |= {(n.module or "").split(".")[0] for n in nodes if isinstance(n, ast.ImportFrom)}
    return {
        "lines": sum(1 for line in solution.splitlines() if line.strip() and not line.strip().startswith("#")),
        "loops": count(ast.For, ast.While), "depth": _loop_depth(tree), "branches": count(ast.If, ast.IfExp),
        "comprehensions": count(ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp),
        "dicts": count(ast.Dict, ast.DictComp, ast.Set, ast.SetComp) > 0, "arith": count(ast.BinOp),
        "calls": calls, "imports": imports, "recursive": any(_calls_itself(d) for d in defs), "functions": len(defs),
        "lambdas": count(ast.Lambda), "strings": bool(_STRING_WORDS.search(statement)) or bool(_STRING_CALLS & calls),
    }


def difficulty_score(f: dict) -> int:
    """Lines, plus 2 per loop and 3 per level of loop nesting beyond one, 1 per branch, comprehension and
    lambda, 4 for recursion, 1 per import and 2 per helper function beyond the first."""
    return (f["lines"] + 2 * f["loops"] + 3 * max(0, f["depth"] - 1) + f["branches"] + f["comprehensions"]
            + f["lambdas"] + 4 * f["recursive"] + len(f["imports"] - {""}) + 2 * max(0, f["functions"] - 1))


def topic_of(f: dict) -> str:
    return next(name for name, rule in TOPIC_RULES if rule(f))


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source.replace("\r\n", "\n").expandtabs(4))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _calls_itself(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, ast.Call) and _name(n.func) == fn.name for n in ast.walk(fn))


def _loop_depth(node: ast.AST, depth: int = 0) -> int:
    here = depth + isinstance(node, ast.For | ast.While)
    return max([here, *(_loop_depth(c, here) for c in ast.iter_child_nodes(node))])


def split_tests(code: str) -> tuple[list[str], list[str]]:
    """Top-level statements of test code: (those that assert, the others), each as source text."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ExerciseError(f"the tests do not parse: line {exc.lineno}: {exc.msg}") from exc
    tests, other = [], []
    for node in tree.body:
        text = ast.get_source_segment(code, node) or ast.unparse(node)
        (tests if any(isinstance(n, ast.Assert) for n in ast.walk(node)) else other).append(text)
    return tests, other


def _mbpp(row: dict) -> Exercise:
    solution = row["solution"].replace("\r\n", "\n")
    tests, setup = split_tests(row["testing_code"].replace("\r\n", "\n"))
    entry = row.get("entry_fn_name") or ""
    statement = f"{row['text'].strip()}\n\nYour function should pass these tests:\n\n" + "\n".join(tests)
    return Exercise(f"mbpp-{row['id']}", "mbpp", f"MBPP {row['id']}: {entry or 'task'}", statement,
                    _starter(solution, entry), tuple(tests), "\n".join(setup), solution, entry)


def _starter(solution: str, entry: str) -> str:
    """The reference's signature for `entry` with an empty body (imports kept: they are not the answer)."""
    tree = _parse(solution)
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry), None)
    head = f"def {entry}({ast.unparse(fn.args)}):" if fn else f"def {entry or 'solution'}():"
    return "\n".join([*imports, *([""] if imports else []), head, "    pass", ""])


def _humaneval(problem) -> Exercise:
    tree = ast.parse(problem.test)
    check = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    module = [ast.get_source_segment(problem.test, n) for n in tree.body if n is not check]
    tests, setup = [], []
    for node in check.body:
        text = ast.unparse(node)
        (tests if any(isinstance(n, ast.Assert) for n in ast.walk(node)) else setup).append(text)
    number = problem.task_id.split("/")[1]
    docstring = problem.prompt.strip()
    return Exercise(f"humaneval-{number}", "humaneval", f"HumanEval {number}: {problem.entry_point}",
                    f"Complete the function so that it does what its docstring says.\n\n{docstring}",
                    problem.prompt + "    pass\n", tuple(tests),
                    "\n".join([*module, f"candidate = {problem.entry_point}", *setup]),
                    problem.prompt + problem.canonical, problem.entry_point)


def custom(number: int, title: str, statement: str, tests: str, starter: str = "", reference: str = "") -> Exercise:
    """A learner's exercise: every assert among the top-level statements of `tests` is one test."""
    asserts, setup = split_tests(tests)
    if not asserts:
        raise ExerciseError("the tests must contain at least one assert statement")
    if not title.strip() or not statement.strip():
        raise ExerciseError("an exercise needs a title and a statement")
    score = difficulty_score(features(reference, statement)) if reference.strip() else 0
    return Exercise(f"custom-{number}", "custom", title.strip(), statement.strip(), starter or "# your code here\n",
                    tuple(asserts), "\n".join(setup), reference, "", CUSTOM_TOPIC, score, 0)


@lru_cache(maxsize=1)
def shipped() -> tuple[Exercise, ...]:
    """Every MBPP (974) and HumanEval (164) problem, rated and ordered by topic then difficulty."""
    from ..eval.data import humaneval, read_json

    raw = [_mbpp(r) for r in read_json("mbpp")] + [_humaneval(p) for p in humaneval()]
    rated = []
    for ex in raw:
        f = features(ex.reference, ex.statement.split("\n\n")[0] if ex.source == "mbpp" else ex.statement)
        rated.append(replace(ex, topic=topic_of(f), score=difficulty_score(f), note=BROKEN.get(ex.id, ""),
                             time_limit=TIME_LIMITS.get(ex.id, 0.0)))
    ranked = sorted(e.score for e in rated)
    cuts = [ranked[len(ranked) * k // 5] for k in range(1, 5)]
    rated = [replace(e, level=1 + sum(e.score >= c for c in cuts)) for e in rated]
    order = {name: i for i, (name, _) in enumerate(TOPIC_RULES)}
    return tuple(sorted(rated, key=lambda e: (order[e.topic], e.score, e.source, _number(e.id))))


def _number(exercise_id: str) -> int:
    tail = exercise_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
