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
    ("{1, 2}", {1, 2}, "set<integer>"), ("[]", [], "list<null>"), ("-9223372036854775808", -2**63, "long"),
])
def test_literal_types(text, value, type_):
    assert infer(text) == (value, type_)


@pytest.mark.parametrize("text", ["1 + 2", "x", "f(1)", "None", "[1, 'a']", "(1, 'a')", "{(1, 2)}", "{[1]: 2}", "1j",
                                  "9223372036854775808"])
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
    """HumanEval: 161 of 164, failing where BabelCode fails (25: arithmetic; 38, 50: imports). MBPP: 440 of the
    500 test questions (BabelCode reports 437 after generating every language; see the README)."""
    he = questions("bc-humaneval-python")
    from codegemma.eval.babelcode.questions import humaneval, mbpp
    assert len(he) == 161 and set(humaneval()[1]) == {"HumanEval/25", "HumanEval/38", "HumanEval/50"}
    assert len(mbpp()[0]) == 440 and "64 bits" in mbpp()[1]["MBPP/67"]  # Bell numbers past int64
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


STUB = {"python": "\n    return {}\n", "javascript": "\n  return {};\n}}\n", "cpp": "\n    return {};",
        "java": "\n        return {};"}
TOOLS = {"python": "python3", "javascript": "node", "cpp": "g++", "java": "java"}


def wrong_value(t: Type, outputs: list) -> object:
    """A value of type t that none of the expected outputs equals (None where there is none to be had)."""
    if t.kind in ("integer", "long"):
        return max([abs(o) for o in outputs] + [0]) * 2 + 12345
    if t.kind in ("float", "double"):
        return 1e30
    if t.kind == "boolean":
        return None if len(set(outputs)) > 1 else not outputs[0]
    if t.kind in ("string", "character"):
        return "~" if t.kind == "character" else "~wrong~"
    elements = [e for o in outputs for e in (o.items() if t.kind == "map" else o)]
    if t.kind == "map":
        key, value = wrong_value(t.args[0], [k for k, _ in elements]), wrong_value(t.args[1], [v for _, v in elements])
        return None if key is None or value is None else {key: value}
    inner = wrong_value(t.args[0], elements) if elements else wrong_value(t.args[0], [0] if "int" in str(t) else [])
    return None if inner is None else ([inner] if t.kind == "list" else {inner})


def check_stubs(benchmark_set: str, strides: dict[str, int]) -> None:
    """Test 0's expected value as a stub: it runs, passes test 0, and every language agrees with Python on
    which tests pass; a value no test expects fails every test, in every language."""
    for index, q in enumerate(questions(f"bc-{benchmark_set}-python")):
        if all(index % stride for stride in strides.values()):
            continue
        bad_value = wrong_value(q.returns, [c.output for c in q.tests])
        patterns = {}
        for name, lang in LANGUAGES.items():
            if name != "python" and (index % strides[name] or shutil.which(TOOLS[name]) is None):
                continue  # (Python, the reference, runs for every question any language runs)
            right = run(name, q, lang.prompt(q), STUB[name].format(lang.literal(q.tests[0].output, q.returns)), 20)
            patterns[name] = right["tests"]
            if bad_value is not None and bad_value not in [c.output for c in q.tests]:
                bad = run(name, q, lang.prompt(q), STUB[name].format(lang.literal(bad_value, q.returns)), 20)
                assert bad["tests"] == "F" * len(q.tests) and bad["status"] == "failed", (q.task_id, name, bad)
        assert patterns["python"][0] == "P" and len(set(patterns.values())) == 1, (q.task_id, patterns)


def test_stubs_agree_across_languages_on_a_sample():
    check_stubs("humaneval", {"python": 8, "javascript": 8, "cpp": 80, "java": 80})
    check_stubs("mbpp", {"python": 25, "javascript": 25, "cpp": 220, "java": 220})


@pytest.mark.slow
def test_stubs_agree_across_languages_everywhere():
    check_stubs("humaneval", {name: 1 for name in LANGUAGES})
    check_stubs("mbpp", {name: 1 for name in LANGUAGES})


def test_python_references_pass_on_a_sample():
    for q in questions("bc-humaneval-python")[::10]:
        assert run("python", q, "", q.solution, 10)["status"] == "passed", q.task_id


@pytest.mark.slow
def test_python_references():
    """HumanEval: all 161 pass. MBPP: 401 of 440; the rest expect a list where the reference returns a tuple,
    or a string where it returns another type (BabelCode's conversion; it reports 400 of 437)."""
    assert all(run("python", q, "", q.solution, 10)["passed"] for q in questions("bc-humaneval-python"))
    assert sum(run("python", q, "", q.solution, 10)["passed"] for q in questions("bc-mbpp-python")) == 401


HANDWRITTEN = {  # HumanEval/2 (truncate_number), /12 (longest; BabelCode's fix wants "" for no strings), /34 (unique)
    "python": {"HumanEval/2": "\n    return number % 1.0\n",
               "HumanEval/12": "\n    if not strings:\n        return ''\n    return max(strings, key=len)\n",
               "HumanEval/34": "\n    return sorted(set(l))\n"},
    "javascript": {"HumanEval/2": "\n  return number % 1.0;\n}\n",
                   "HumanEval/12": "\n  if (strings.length === 0) return '';\n"
                                   "  return strings.reduce((a, b) => (b.length > a.length ? b : a));\n}\n",
                   "HumanEval/34": "\n  return [...new Set(l)].sort((a, b) => a - b);\n}\n"},
    "cpp": {"HumanEval/2": "\n    return number - floor(number);",
            "HumanEval/12": "\n    string best;\n    for (auto& s : strings) if (s.size() > best.size()) best = s;\n"
                            "    return best;",
            "HumanEval/34": "\n    set<int> s(l.begin(), l.end());\n    return vector<int>(s.begin(), s.end());"},
    "java": {"HumanEval/2": "\n        return number - (float) Math.floor(number);",
             "HumanEval/12": "\n        String best = \"\";\n"
                             "        for (String s : strings) if (s.length() > best.length()) best = s;\n"
                             "        return best;",
             "HumanEval/34": "\n        return new ArrayList<>(new TreeSet<>(l));"},
}


@pytest.mark.parametrize("language", sorted(HANDWRITTEN))
def test_handwritten_solutions_pass(language):
    if shutil.which(TOOLS[language]) is None:
        pytest.skip(f"{language} needs {TOOLS[language]}")
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


@pytest.mark.parametrize("language, broken", [("cpp", "\n    return nonsense("),
                                              ("java", "\n        return nonsense(")])
def test_a_program_that_does_not_compile_is_a_compile_error(language, broken):
    if shutil.which(TOOLS[language]) is None:
        pytest.skip(f"{language} needs {TOOLS[language]}")
    result = score_one(load_problems(f"bc-humaneval-{language}")[0], broken, 20.0)
    assert result["status"] == "compile error" and not result["passed"]


HOSTILE_COMPILED = {  # HumanEval/0: bool hasCloseElements(vector<float>, float) / Boolean ... (ArrayList<Float>, Float)
    ("cpp", "endless loop"): "\n    while (true) {}\n    return false;",
    ("cpp", "write outside"): "\n    FILE* f = fopen(\"/etc/codegemma-owned\", \"w\");\n    if (f) fputs(\"x\", f);\n"
                              "    return false;",
    ("cpp", "fork bomb"): "\n    while (true) fork();\n    return false;",
    ("cpp", "network"): "\n    return system(\"curl -s -m 2 http://127.0.0.1:1\") == 0;",
    ("java", "endless loop"): "\n        while (true) {}",
    ("java", "write outside"): "\n        try { new java.io.FileWriter(\"/etc/codegemma-owned\").write(\"x\"); }\n"
                               "        catch (Exception e) { }\n        return false;",
    ("java", "threads"): "\n        while (true) new Thread(() -> { while (true) {} }).start();",
}


@pytest.mark.parametrize("language, name", sorted(HOSTILE_COMPILED))
def test_hostile_compiled_programs_are_contained(language, name):
    import os

    if shutil.which(TOOLS[language]) is None:
        pytest.skip(f"{language} needs {TOOLS[language]}")
    problem = load_problems(f"bc-humaneval-{language}")[0]
    result = score_one(problem, HOSTILE_COMPILED[(language, name)], 8.0)
    assert not result["passed"] and result["status"] != "compile error", result
    assert result["duration"] < 20 and not os.path.exists("/etc/codegemma-owned")
