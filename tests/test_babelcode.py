"""BabelCode: type inference, question conversion, literal rendering, and the drivers checked against each other
(BabelCode ships reference solutions in Python only)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from codegemma.errors import CodeGemmaError
from codegemma.eval.babelcode import LANGUAGES, javascript, python, questions, run, stub
from codegemma.eval.babelcode import kotlin as kotlin_module
from codegemma.eval.babelcode.batch import BATCH, run_batch
from codegemma.eval.babelcode.schema import SchemaError, Type, literal, parse_type, unify
from codegemma.eval.data import load_problems
from codegemma.eval.harness import RunSettings, score_many, score_one

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="JavaScript needs Node.js: apt-get install nodejs")


def missing(language: str) -> str | None:
    """Why a language's toolchain cannot run here (the message `eval run` refuses it with), or None."""
    try:
        LANGUAGES[language].run_argv()
    except CodeGemmaError as exc:
        return str(exc)
    return None


def needs(language: str) -> None:
    if missing(language):
        pytest.skip(missing(language))


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
    500 test questions. BabelCode's own converter (commit e8314f6, run on the same file) keeps 437: six we keep
    it drops (117, 370, 484, 493: a tuple mixing character and string or float and double; 182: a tuple
    position that is always an empty list; 185: float against double between tests), three we drop it keeps
    (67: Bell numbers past 64 bits; 395, 452: None expected). See the README."""
    he = questions("bc-humaneval-python")
    from codegemma.eval.babelcode.questions import humaneval, mbpp
    assert len(he) == 161 and set(humaneval()[1]) == {"HumanEval/25", "HumanEval/38", "HumanEval/50"}
    kept, dropped = {q.task_id for q in mbpp()[0]}, mbpp()[1]
    assert len(kept) == 440 and "64 bits" in dropped["MBPP/67"]  # Bell numbers past int64
    assert {f"MBPP/{n}" for n in (117, 182, 185, 370, 484, 493)} <= kept
    assert all("None" in dropped[f"MBPP/{n}"] for n in (395, 452))
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


def wrong_value(t: Type, outputs: list) -> object:
    """A value of type t that none of the expected outputs equals (None where there is none to be had)."""
    if t.kind in ("integer", "long"):
        return max([abs(o) for o in outputs] + [0]) * 2 + 12345
    if t.kind in ("float", "double"):
        return 1e20  # (within C#'s decimal, which a double is there)
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
    which tests pass; a value no test expects fails every test, in every language. (Kotlin's programs are
    compiled in batches, as `eval score` does; the others one by one, through `run`.)"""
    jobs = []  # (language, question, completion, which)
    for index, q in enumerate(questions(f"bc-{benchmark_set}-python")):
        if all(index % stride for stride in strides.values()):
            continue
        bad_value = wrong_value(q.returns, [c.output for c in q.tests])
        for name in LANGUAGES:
            if name != "python" and (name not in strides or index % strides[name] or missing(name)):
                continue  # (Python, the reference, runs for every question any language runs)
            jobs.append((name, q, stub(name, q, q.tests[0].output), "right"))
            if bad_value is not None and bad_value not in [c.output for c in q.tests]:
                jobs.append((name, q, stub(name, q, bad_value), "bad"))
    patterns: dict[str, dict[str, str]] = {}
    for (name, q, _, which), result in zip(jobs, score_jobs(jobs)):
        if which == "right":
            patterns.setdefault(q.task_id, {})[name] = result["tests"]
        else:
            assert result["tests"] == "F" * len(q.tests) and result["status"] == "failed", (q.task_id, name, result)
    for task_id, found in patterns.items():
        assert found["python"][0] == "P" and len(set(found.values())) == 1, (task_id, found)


def score_jobs(jobs: list) -> list[dict]:
    """Results of (language, question, completion, _) jobs on two threads; Kotlin's in batches of BATCH."""
    kotlin = [i for i, job in enumerate(jobs) if job[0] == "kotlin"]
    chunks = [kotlin[i:i + BATCH] for i in range(0, len(kotlin), BATCH)]
    chunks += [[i] for i, job in enumerate(jobs) if job[0] != "kotlin"]

    def score(chunk: list[int]) -> list[dict]:
        if jobs[chunk[0]][0] == "kotlin":
            return run_batch("kotlin", [(jobs[i][1], kotlin_module.prompt(jobs[i][1]), jobs[i][2]) for i in chunk], 20)
        name, q, completion, _ = jobs[chunk[0]]
        return [run(name, q, LANGUAGES[name].prompt(q), completion, 20)]

    results: list[dict] = [{}] * len(jobs)
    with ThreadPoolExecutor(2) as pool:
        for chunk, scored in zip(chunks, pool.map(score, chunks)):
            for i, result in zip(chunk, scored):
                results[i] = result
    return results


def test_stubs_agree_across_languages_on_a_sample():
    check_stubs("humaneval", {"python": 16, "javascript": 16, "cpp": 80, "java": 80, "go": 161, "rust": 161,
                              "csharp": 80})  # (Kotlin in the slow tier only: kotlinc takes about 5 s a program)
    check_stubs("mbpp", {"python": 55, "javascript": 55, "cpp": 220, "java": 220, "go": 440, "rust": 440,
                         "csharp": 220})


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
    "go": {"HumanEval/2": "\n    return number - math.Floor(number)\n}\n",
           "HumanEval/12": "\n    best := \"\"\n    for _, s := range strings {\n        if len(s) > len(best) {\n"
                           "            best = s\n        }\n    }\n    return best\n}\n",
           "HumanEval/34": "\n    seen := map[int]bool{}\n    var out []int\n    for _, x := range l {\n"
                           "        if !seen[x] {\n            seen[x] = true\n            out = append(out, x)\n"
                           "        }\n    }\n    sort.Ints(out)\n    return out\n}\n"},
    "rust": {"HumanEval/2": "\n    number - number.floor()",
             "HumanEval/12": "\n    let mut best = String::new();\n"
                             "    for s in strings {\n        if s.len() > best.len() {\n            best = s;\n"
                             "        }\n    }\n    best",
             "HumanEval/34": "\n    let mut v: Vec<i32> = l.into_iter().collect::<HashSet<i32>>()\n"
                             "        .into_iter().collect();\n"
                             "    v.sort();\n    v"},
    "csharp": {"HumanEval/2": "\n        return number - (float) Math.Floor(number);",
               "HumanEval/12": "\n        string best = \"\";\n"
                               "        foreach (var s in strings) if (s.Length > best.Length) best = s;\n"
                               "        return best;",
               "HumanEval/34": "\n        return l.Distinct().OrderBy(x => x).ToList();"},
    "kotlin": {"HumanEval/2": "\n    return number - floor(number)",
               "HumanEval/12": "\n    var best = \"\"\n    for (s in strings) if (s.length > best.length) best = s\n"
                               "    return best",
               "HumanEval/34": "\n    return ArrayList(l.toSortedSet())"},
}


def slow_for_kotlin(languages) -> list:
    """kotlinc takes about 4 s a program: Kotlin's cases run in the slow tier."""
    return [pytest.param(name, marks=[pytest.mark.slow] if name == "kotlin" else []) for name in languages]


@pytest.mark.parametrize("language", slow_for_kotlin(sorted(HANDWRITTEN)))
def test_handwritten_solutions_pass(language):
    needs(language)
    problems = {p.task_id: p for p in load_problems(f"bc-humaneval-{language}")}
    for task_id, body in HANDWRITTEN[language].items():
        if task_id not in problems:
            continue  # (a question BabelCode cannot convert)
        result = score_one(problems[task_id], body, 10.0)
        assert result["passed"], (task_id, result)


BATCH_EXTRAS = {  # HumanEval/0 again: a program that does not compile, and one that never ends
    "java": ["\n        return nonsense(", "\n        while (true) {}"],
    "kotlin": ["\n    return nonsense(", "\n    while (true) {}"],
}


@pytest.mark.parametrize("language", slow_for_kotlin(sorted(BATCH_EXTRAS)))
def test_a_batch_compiles_together_and_runs_apart(language):
    """score_many (what `eval score` and `eval run` call) compiles Java and Kotlin programs together: the
    handwritten solutions pass, a test-0 stub gives Python's pattern, a program that does not compile is a
    compile error naming only its own lines, an endless one times out alone."""
    needs(language)
    by_id = {p.task_id: p for p in load_problems(f"bc-humaneval-{language}")}
    first = by_id["HumanEval/0"]
    wanted = [(by_id[t], body) for t, body in HANDWRITTEN[language].items()]
    wanted += [(first, stub(language, first.question, first.question.tests[0].output))]
    wanted += [(first, body) for body in BATCH_EXTRAS[language]]
    results = score_many([p for p, _ in wanted], [c for _, c in wanted], 3.0)
    reference = run("python", first.question, python.prompt(first.question),
                 stub("python", first.question, first.question.tests[0].output), 10)
    assert [r["status"] for r in results] == ["passed"] * 3 + [reference["status"], "compile error", "timeout"]
    assert results[3]["tests"] == reference["tests"]
    assert "p4/" in results[4]["error"] and not any(f"p{i}/" in results[4]["error"] for i in (0, 1, 2, 3, 5))


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
    assert sorted(r["task_id"] for r in rows) == ["HumanEval/0", "HumanEval/1"]  # (in the order scored)
    assert all(r["status"] in ("failed", "error", "timeout") for r in rows)  # a random model passes nothing
    assert "| BC HumanEval Python | 0.00 (2) | 21.70 |  | 42.20 | 48.40 |  |" in report([tmp_path / "bc"])


@pytest.mark.parametrize("language, broken", [("cpp", "\n    return nonsense("),
                                              ("java", "\n        return nonsense("),
                                              ("go", "\n    return nonsense(\n}\n"), ("rust", "\n    nonsense("),
                                              ("csharp", "\n        return nonsense("),
                                              pytest.param("kotlin", "\n    return nonsense(",
                                                           marks=pytest.mark.slow)])
def test_a_program_that_does_not_compile_is_a_compile_error(language, broken):
    needs(language)
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
    # Go programs can import nothing but fmt, math, reflect and sort (no files, network or processes)
    ("go", "endless loop"): "\n    for {\n    }\n}\n",
    ("go", "goroutines"): "\n    for {\n        go func() {\n            for {\n            }\n        }()\n    }\n}\n",
    ("go", "huge output"): "\n    for {\n        fmt.Println(fmt.Sprint(make([]int, 10000)))\n    }\n}\n",
    ("go", "memory hog"): "\n    var hog [][]byte\n    for {\n        hog = append(hog, make([]byte, 1<<24))\n"
                          "        hog[len(hog)-1][0] = 1\n    }\n}\n",
    ("rust", "endless loop"): "\n    loop {}",
    ("rust", "write outside"): "\n    let _ = std::fs::write(\"/etc/codegemma-owned\", \"x\");\n    false",
    ("rust", "fork bomb"): "\n    loop {\n        let _ = std::process::Command::new(\"/proc/self/exe\")"
                           ".spawn();\n    }",
    ("rust", "huge output"): "\n    loop {\n        println!(\"{}\", \"x\".repeat(100000));\n    }",
    ("csharp", "endless loop"): "\n        while (true) {}",
    ("csharp", "write outside"): "\n        System.IO.File.WriteAllText(\"/etc/codegemma-owned\", \"x\");\n"
                                 "        return false;",
    ("csharp", "fork bomb"): "\n        while (true)\n"
                             "            System.Diagnostics.Process.Start(\"/usr/bin/mono\", \"main.exe\");",
    ("csharp", "huge output"): "\n        while (true) Console.WriteLine(new string('x', 100000));",
    ("kotlin", "endless loop"): "\n    while (true) {}",
    ("kotlin", "write outside"): "\n    java.io.File(\"/etc/codegemma-owned\").writeText(\"x\")\n    return false",
    ("kotlin", "threads"): "\n    while (true) Thread { while (true) {} }.start()",
}


@pytest.mark.parametrize("language, name", [
    pytest.param(language, name, marks=[pytest.mark.slow] if language == "kotlin" or (
        language in ("go", "rust", "csharp") and name in ("goroutines", "huge output", "fork bomb")) else [])
    for language, name in sorted(HOSTILE_COMPILED)])  # (Kotlin's wall limit includes 40 s for kotlinc)
def test_hostile_compiled_programs_are_contained(language, name):
    import os

    from codegemma.eval.babelcode.kotlin import COMPILE_SECONDS

    needs(language)
    problem = load_problems(f"bc-humaneval-{language}")[0]
    result = score_one(problem, HOSTILE_COMPILED[(language, name)], 8.0 if language in ("cpp", "java") else 3.0)
    assert not result["passed"] and result["status"] != "compile error", result
    assert result["duration"] < 20 + (COMPILE_SECONDS if language == "kotlin" else 0), result
    assert not os.path.exists("/etc/codegemma-owned")


def test_compiled_programs_read_no_secrets_at_compile_time():
    needs("rust")
    problem = load_problems("bc-humaneval-rust")[0]
    result = score_one(problem, '\n    include_str!("/etc/shadow").len() > 0', 20.0)
    assert result["status"] == "compile error" and "root:" not in result["error"], result


SNOOPS = {  # HumanEval/0: connect to the test's port, then print the connection's outcome and the environment
    "rust": ('\n    let talked = std::net::TcpStream::connect("127.0.0.1:{port}").is_ok();\n'
             '    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{{k}}={{v}}")).collect();\n'
             '    eprintln!("connected={{talked}} {{}}", env.join(" "));\n    false'),
    "csharp": ("\n        bool talked = false;\n"
               '        try {{ new System.Net.Sockets.TcpClient("127.0.0.1", {port}); talked = true; }} catch {{ }}\n'
               "        var env = new StringBuilder();\n"
               "        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())\n"
               '            env.Append(e.Key + "=" + e.Value + " ");\n'
               '        Console.Error.WriteLine("connected=" + (talked ? "true" : "false") + " " + env);\n'
               "        return false;"),
    "kotlin": ('\n    val talked = try {{ java.net.Socket("127.0.0.1", {port}); true }}\n'
               '        catch (e: Exception) {{ false }}\n'
               '    System.err.println("connected=$talked " + System.getenv().toString())\n    return false'),
}


@pytest.mark.parametrize("language", slow_for_kotlin(sorted(SNOOPS)))
def test_compiled_programs_see_neither_the_environment_nor_the_network(monkeypatch, language):
    import socket

    needs(language)
    monkeypatch.setenv("CODEGEMMA_SECRET", "s3cr3t-value")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    problem = load_problems(f"bc-humaneval-{language}")[0]
    result = score_one(problem, SNOOPS[language].format(port=port), 20.0)
    with pytest.raises(OSError):
        server.accept()
    server.close()
    assert result["status"] == "failed" and "connected=" in result["error"], result  # (Mono's TcpClient may say true)
    assert "s3cr3t" not in result["error"] and "HOME=" in result["error"], result


EXTRA_VALUES = [("'", "character"), ("\\", "character"), ("é", "character"), ({1: "a", -2: "b"}, "map<integer;string>"),
                (["a\tb", ""], "list<string>"), ({"x", "y"}, "set<character>"), (1.0, "double")]


def as_json(value: object, t: Type) -> object:
    """How Go's encoding/json writes a value of schema type t (runes as numbers, sets as maps to true)."""
    if t.kind == "character":
        return ord(value)
    if t.kind == "list":
        return [as_json(v, t.args[0]) for v in value]
    if t.kind == "set":
        return {str(as_json(v, t.args[0])): True for v in value}
    if t.kind == "map":
        return {str(as_json(k, t.args[0])): as_json(v, t.args[1]) for k, v in value.items()}
    return value


def test_go_literals_read_back(tmp_path):
    from codegemma.eval.babelcode import go

    needs("go")
    values = VALUES + EXTRA_VALUES
    rendered = ",\n        ".join(go.literal(v, parse_type(t)) for v, t in values)
    (tmp_path / "main.go").write_text(
        'package main\n\nimport (\n    "encoding/json"\n    "fmt"\n)\n\n'
        f"func main() {{\n    out, _ := json.Marshal([]interface{{}}{{\n        {rendered},\n    }})\n"
        "    fmt.Println(string(out))\n}\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"), "GO111MODULE": "off"}
    out = subprocess.run([go.GO, "run", "main.go"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [as_json(v, parse_type(t)) for v, t in values]


def test_rust_literals_read_back(tmp_path):
    from codegemma.eval.babelcode import rust

    needs("rust")
    values = VALUES + EXTRA_VALUES
    lines = "".join(f'    println!("{{:?}}", {rust.literal(v, parse_type(t))});\n' for v, t in values)
    (tmp_path / "main.rs").write_text(f"use std::collections::{{HashMap, HashSet}};\n\nfn main() {{\n{lines}}}\n")
    subprocess.run([rust.RUSTC, "-o", "main", "main.rs"], cwd=tmp_path, capture_output=True, check=True)
    out = subprocess.run(["./main"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    assert [eval(line, {"true": True, "false": False}) for line in out] == [v for v, _ in values]  # noqa: S307


def normal(value: object, t: Type) -> object:
    """A value as printed through JSON (sets as sorted lists, map keys as strings)."""
    if t.kind == "set":
        return sorted((normal(v, t.args[0]) for v in value), key=repr)
    if t.kind == "list":
        return [normal(v, t.args[0]) for v in value]
    if t.kind == "map":
        return {str(k): normal(v, t.args[1]) for k, v in value.items()}
    return value


SHOW_CSHARP = """\
using System;
using System.Collections.Generic;
using System.Linq;

class Show {
    static string Text(object o) {
        if (o is string || o is char)
            return "\\"" + string.Concat(o.ToString().Select(c => "\\\\u" + ((int) c).ToString("x4"))) + "\\"";
        if (o is bool) return (bool) o ? "true" : "false";
        var d = o as System.Collections.IDictionary;
        if (d != null) {
            var parts = new List<string>();
            foreach (System.Collections.DictionaryEntry e in d)
                parts.Add(Text(e.Key.ToString()) + ": " + Text(e.Value));
            return "{" + string.Join(", ", parts) + "}";
        }
        var l = o as System.Collections.IEnumerable;
        if (l != null) return "[" + string.Join(", ", l.Cast<object>().Select(Text)) + "]";
        return Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture);
    }

    static void Main() {
VALUES
    }
}
"""
SHOW_KOTLIN = """\
fun text(o: Any?): String = when (o) {
    is String -> "\\"" + o.map { "\\\\u%04x".format(it.code) }.joinToString("") + "\\""
    is Char -> text(o.toString())
    is Map<*, *> -> o.entries.joinToString(", ", "{", "}") { text(it.key.toString()) + ": " + text(it.value) }
    is Collection<*> -> o.joinToString(", ", "[", "]") { text(it) }
    else -> o.toString()
}

fun main() {
VALUES
}
"""


@pytest.mark.parametrize("language", ["csharp", "kotlin"])
def test_csharp_and_kotlin_literals_read_back(tmp_path, language):
    from codegemma.eval.babelcode import csharp, kotlin

    needs(language)
    values = VALUES + EXTRA_VALUES
    if language == "csharp":
        lines = "".join(f"        Console.WriteLine(Text({csharp.literal(v, parse_type(t))}));\n" for v, t in values)
        (tmp_path / "show.cs").write_text(SHOW_CSHARP.replace("VALUES\n", lines))
        subprocess.run([csharp.MCS, "-out:show.exe", "show.cs"], cwd=tmp_path, capture_output=True, check=True)
        argv = [csharp.MONO, "show.exe"]
    else:
        lines = "".join(f"    println(text({kotlin.literal(v, parse_type(t))}))\n" for v, t in values)
        (tmp_path / "show.kt").write_text(SHOW_KOTLIN.replace("VALUES\n", lines))
        subprocess.run([kotlin.KOTLINC, "-nowarn", "-d", "out", "show.kt"], cwd=tmp_path, capture_output=True,
                       check=True)
        argv = [kotlin.JAVA, "-cp", f"out:{kotlin.STDLIB}", "ShowKt"]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    assert [normal(json.loads(line), parse_type(t)) for line, (_, t) in zip(out, values)] == \
        [normal(v, parse_type(t)) for v, t in values]


def test_go_nil_slices_equal_empty_ones():
    """BabelCode's reflect.DeepEqual fails `var r []int; return r` where [] is expected; our driver does not."""
    needs("go")
    q = next(q for q in questions("bc-humaneval-go") if q.returns.kind == "list" and q.tests[0].output == [])
    from codegemma.eval.babelcode import go

    nil = run("go", q, go.prompt(q), f"\n    var r {go.type_name(q.returns)}\n    return r\n}}\n", 20)
    assert nil["tests"][0] == "P", (q.task_id, nil)


def test_go_and_rust_report_a_panic_and_run_the_other_tests():
    """HumanEval/0 answered `true`, with an index out of range where threshold > 0.9 (tests 2 and 5)."""
    for language, body in [("go", "\n    if threshold > 0.9 {\n        var l []bool\n        return l[1]\n    }\n"
                                  "    return true\n}\n"),
                           ("rust", "\n    if threshold > 0.9 {\n        let l: Vec<bool> = vec![];\n"
                                    "        return l[1];\n    }\n    true")]:
        needs(language)
        result = score_one(load_problems(f"bc-humaneval-{language}")[0], body, 20.0)
        assert result["status"] == "error" and result["tests"] == "PFEFPEF", (language, result)


@pytest.mark.parametrize("language, path, package", [("go", "GO", "golang-go"), ("rust", "RUSTC", "rustc")])
def test_a_missing_toolchain_is_refused_naming_what_to_install(monkeypatch, language, path, package):
    monkeypatch.setattr(LANGUAGES[language], path, "/nonexistent/compiler")
    with pytest.raises(CodeGemmaError, match=f"apt-get install {package}"):
        load_problems(f"bc-humaneval-{language}")
    assert f"apt-get install {package}" in missing(language)


def test_rust_mbpp_prompt_is_the_model_cards():
    """CodeGemma's model card prompts with BabelCode's MBPP/3 in Rust, Examples block included."""
    from codegemma.eval.babelcode import rust
    from codegemma.eval.babelcode.questions import convert
    from codegemma.eval.data import read_json

    row = next(r for r in read_json("mbpp") if int(r["id"]) == 3)
    assert rust.prompt(convert(row, "MBPP/3"), examples=True) == (
        "/// Write a rust function to identify non-prime numbers.\n///\n/// Examples:\n/// >>> is_not_prime(2)\n"
        "/// False\n/// >>> is_not_prime(10)\n/// True\npub fn is_not_prime(n: i32) -> bool {")


def test_prompts_name_the_function_in_each_languages_convention():
    from codegemma.eval.babelcode import csharp, go, kotlin, rust

    q = next(q for q in questions("bc-mbpp-python") if q.entry == "remove_Occ")
    assert "func removeOcc(s string, ch rune) string {" in go.prompt(q)
    assert "pub fn remove_occ(s: String, ch: char) -> String {" in rust.prompt(q)
    assert "    public string RemoveOcc(string s, char ch) {" in csharp.prompt(q)
    assert "fun removeOcc(s: String, ch: Char): String {" in kotlin.prompt(q)
    assert ">>> RemoveOcc(" in csharp.prompt(q, examples=True) and "remove_Occ" not in csharp.prompt(q, examples=True)
    by_id = {q.task_id: q for q in questions("bc-mbpp-python")}
    assert "\nfunc func_(nums [][]int, k int) []int {" in go.prompt(by_id["MBPP/31"])  # (keywords get a `_`)
    assert "\npub fn match_(text: String) -> String {" in rust.prompt(by_id["MBPP/482"])
