"""BabelCode: type inference, question conversion, literal rendering, and the drivers checked against each other
(BabelCode ships reference solutions in Python only)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess

import pytest

from codegemma.eval.babelcode import LANGUAGES, javascript, python, questions, run
from codegemma.eval.babelcode.schema import SchemaError, Type, literal, parse_type, unify
from codegemma.eval.data import load_problems
from codegemma.eval.harness import RunSettings, score_one

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="JavaScript needs Node.js: apt-get install nodejs")


def infer(text: str) -> tuple[object, str]:
    node = ast.parse(text, mode="eval").body
    value, t = literal(node, text)
    return value, str(t)


@pytest.mark.parametrize("text, value, type_", [
    ("3", 3, "integer"), ("-3", -3, "integer"), ("1234567890", 1234567890, "long"),
    ("-123456789", -123456789, "integer"), ("1.5", 1.5, "float"), ("-0.1234567", -0.1234567, "double"),
    ("True", True, "boolean"), ("'a'", "a", "character"), ("'ab'", "ab", "string"), ("'é'", "é", "character"),
    ("'日本'", "日本", "string"), ('"it\'s \\"q\\""', 'it\'s "q"', "string"),
    ("[1, 2]", [1, 2], "list<integer>"), ("[1, 2.5]", [1, 2.5], "list<float>"), ("(1, 2)", [1, 2], "list<integer>"),
    ("[[1], []]", [[1], []], "list<list<integer>>"), ("['a', 'bc']", ["a", "bc"], "list<string>"),
    ("{'a': [1, 12345678901]}", {"a": [1, 12345678901]}, "map<character;list<long>>"),
    ("{1, 2}", {1, 2}, "set<integer>"), ("[]", [], "list<null>"),
])
def test_literal_types(text, value, type_):
    assert infer(text) == (value, type_)


@pytest.mark.parametrize("text", ["1 + 2", "x", "f(1)", "None", "[1, 'a']", "(1, 'a')", "{(1, 2)}", "{[1]: 2}", "1j"])
def test_what_the_schema_cannot_express(text):
    with pytest.raises(SchemaError):
        infer(text)


def test_types_widen_as_babelcode_consolidates():
    assert unify(Type("integer"), Type("long")) == Type("long")
    assert unify(Type("float"), Type("integer")) == Type("float")
    assert unify(Type("character"), Type("string")) == Type("string")
    assert unify(parse_type("list<null>"), parse_type("list<integer>")) == parse_type("list<integer>")
    assert str(parse_type("map<string;list<integer>>")) == "map<string;list<integer>>"
    with pytest.raises(SchemaError):
        unify(Type("string"), Type("integer"))


def test_conversion_counts():
    """HumanEval: 161 of 164, failing where BabelCode fails (25: arithmetic; 38, 50: imports). MBPP: 441 of the
    500 test questions (BabelCode reports 437 after generating every language; see the README)."""
    he = questions("bc-humaneval-python")
    from codegemma.eval.babelcode.questions import humaneval, mbpp
    assert len(he) == 161 and set(humaneval()[1]) == {"HumanEval/25", "HumanEval/38", "HumanEval/50"}
    assert len(mbpp()[0]) == 441
    q = next(q for q in he if q.task_id == "HumanEval/0")
    assert [(n, str(t)) for n, t in q.params] == [("numbers", "list<float>"), ("threshold", "float")]
    assert str(q.returns) == "boolean" and len(q.tests) == 7


VALUES = [(3, "integer"), (-12345678901, "long"), (2.5, "float"), (-0.12345678, "double"), (True, "boolean"),
          ("q'\"\\\n日本😀", "string"), ("x", "character"), ([[1, -2], []], "list<list<integer>>"),
          ({"a": [1.5], "b\"": []}, "map<string;list<float>>"), ({3, 1, 2}, "set<integer>")]


@pytest.mark.parametrize("value, type_", VALUES)
def test_python_literals_read_back(value, type_):
    assert eval(python.literal(value, parse_type(type_))) == value  # noqa: S307 (our own rendering)


@needs_node
def test_javascript_literals_read_back():
    rendered = [javascript.literal(v, parse_type(t)) for v, t in VALUES]
    script = ("const xs = [" + ", ".join(rendered) + "];\n"
              "console.log(JSON.stringify(xs.map(x => x instanceof Set ? [...x].sort() : x)));")
    out = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    expected = [sorted(v) if isinstance(v, set) else v for v, _ in VALUES]
    assert out == expected


def stub(language: str, q, value: str) -> str:
    return f"\n    return {value}\n" if language == "python" else f"\n  return {value};\n}}\n"


def wrong(language: str, q) -> str:
    if q.returns.kind in ("float", "double"):
        return "1e30"
    return "None" if language == "python" else "null"


def check_stubs(benchmark_set: str, stride: int) -> None:
    """Test 0's expected value as a stub: it runs, passes test 0, and every language agrees with Python on
    which tests pass; a wrong value fails every test."""
    for q in questions(f"bc-{benchmark_set}-python")[::stride]:
        patterns = {}
        for name, lang in LANGUAGES.items():
            if name == "javascript" and shutil.which("node") is None:
                continue
            right = run(name, q, lang.prompt(q), stub(name, q, lang.literal(q.tests[0].output, q.returns)), 10)
            patterns[name] = right["tests"]
            bad = run(name, q, lang.prompt(q), stub(name, q, wrong(name, q)), 10)
            assert bad["tests"] == "F" * len(q.tests) and bad["status"] == "failed", (q.task_id, name, bad)
        assert patterns["python"][0] == "P" and len(set(patterns.values())) == 1, (q.task_id, patterns)


def test_stubs_agree_across_languages_on_a_sample():
    check_stubs("humaneval", 8)
    check_stubs("mbpp", 25)


@pytest.mark.slow
def test_stubs_agree_across_languages_everywhere():
    check_stubs("humaneval", 1)
    check_stubs("mbpp", 1)


def test_python_references_pass_on_a_sample():
    for q in questions("bc-humaneval-python")[::10]:
        assert run("python", q, "", q.solution, 10)["status"] == "passed", q.task_id


@pytest.mark.slow
def test_python_references():
    """HumanEval: all 161 pass. MBPP: 402 of 441; the rest expect a list where the reference returns a tuple,
    or a string where it returns another type (BabelCode's conversion; it reports 400 of 437)."""
    assert all(run("python", q, "", q.solution, 10)["passed"] for q in questions("bc-humaneval-python"))
    assert sum(run("python", q, "", q.solution, 10)["passed"] for q in questions("bc-mbpp-python")) == 402


HANDWRITTEN = {  # HumanEval/2 (truncate_number), /12 (longest; BabelCode's fix wants "" for no strings), /34 (unique)
    "python": {"HumanEval/2": "\n    return number % 1.0\n",
               "HumanEval/12": "\n    if not strings:\n        return ''\n    return max(strings, key=len)\n",
               "HumanEval/34": "\n    return sorted(set(l))\n"},
    "javascript": {"HumanEval/2": "\n  return number % 1.0;\n}\n",
                   "HumanEval/12": "\n  if (strings.length === 0) return '';\n"
                                   "  return strings.reduce((a, b) => (b.length > a.length ? b : a));\n}\n",
                   "HumanEval/34": "\n  return [...new Set(l)].sort((a, b) => a - b);\n}\n"},
}


@pytest.mark.parametrize("language", sorted(HANDWRITTEN))
def test_handwritten_solutions_pass(language):
    if language == "javascript" and shutil.which("node") is None:
        pytest.skip("JavaScript needs Node.js: apt-get install nodejs")
    problems = {p.task_id: p for p in load_problems(f"bc-humaneval-{language}")}
    for task_id, body in HANDWRITTEN[language].items():
        if task_id not in problems:
            continue  # (a question BabelCode cannot convert)
        result = score_one(problems[task_id], body, 10.0)
        assert result["passed"], (task_id, result)


HOSTILE_JS = {
    "endless loop": "\n  while (true) {}\n}\n",
    "write outside": "\n  require('fs').writeFileSync('/etc/codegemma-owned', 'x');\n  return 0;\n}\n",
    "network": "\n  require('child_process').execSync('curl -s http://127.0.0.1:1');\n  return 0;\n}\n",
    "fake passes": "\n  for (let i = 0; i < 20; i++) console.log(`TEST-${i}...PASSED`);\n  process.exit(0);\n}\n",
}


@needs_node
@pytest.mark.parametrize("name", sorted(HOSTILE_JS))
def test_hostile_javascript_is_contained(name):
    problem = load_problems("bc-humaneval-javascript")[0]
    result = score_one(problem, HOSTILE_JS[name], 3.0)
    assert not result["passed"] and result["duration"] < 10
    assert not __import__("os").path.exists("/etc/codegemma-owned")


def test_eval_run_and_report_on_a_tiny_model(tiny_checkpoint, tmp_path):
    from codegemma import load
    from codegemma.eval.harness import report
    from codegemma.eval.harness import run as run_benchmark

    summary = run_benchmark("bc-humaneval-python", load(tiny_checkpoint), tmp_path / "bc",
                            RunSettings(limit=2, max_tokens=8))
    assert summary["problems"] == 2 and summary["samples"] == 2
    rows = [json.loads(line) for line in (tmp_path / "bc" / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1"]
    assert all(r["status"] in ("failed", "error", "timeout") for r in rows)  # a random model passes nothing
    assert "| BC HumanEval Python | 0.00 (2) | 21.70 |  | 42.20 | 48.40 |  |" in report([tmp_path / "bc"])
