"""codegemma learn / fix / explain: exercises, grading in the real sandbox, progress in SQLite, the spoiler
filter, syntax correction, and the whole flow through the real app on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from codegemma.cli import main
from codegemma.eval.data import KNOWN_BROKEN
from codegemma.learn.exercises import BROKEN, LEVELS, TOPIC_RULES, ExerciseError, custom, shipped
from codegemma.learn.fixing import changed_lines, fix, max_changed_lines, problems
from codegemma.learn.grading import grade
from codegemma.learn.hints import hint, is_spoiler, tidy
from codegemma.learn.progress import Progress

WRONG = "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n"
RIGHT = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n"
WRONG_JS = "function similarElements(testTup1, testTup2) {\n  return testTup1;\n}\n"
RIGHT_JS = ("function similarElements(testTup1, testTup2) {\n"
            "  return testTup1.filter((x) => testTup2.includes(x)).sort((a, b) => a - b);\n}\n")


@pytest.fixture(scope="module")
def catalogue():
    return {e.id: e for e in shipped()}


def test_catalogue_holds_every_shipped_problem_by_topic_and_difficulty(catalogue):
    exercises = list(shipped())
    assert sum(e.source == "mbpp" for e in exercises) == 974 and sum(e.source == "humaneval" for e in exercises) == 164
    order = [name for name, _ in TOPIC_RULES]
    keys = [(order.index(e.topic), e.score) for e in exercises]
    assert keys == sorted(keys)  # grouped by topic, easier first
    assert {e.level for e in exercises} == set(range(1, len(LEVELS) + 1))
    assert all(e.tests and e.reference and e.starter for e in exercises)
    # difficulty follows the reference: a one-liner rates below a nested-loop dynamic programme
    assert catalogue["mbpp-1"].score > catalogue["mbpp-2"].score
    assert catalogue["mbpp-7"].topic == "regular expressions"  # its reference imports re


def test_reference_solutions_pass_and_starters_fail(catalogue):
    sample = list(catalogue.values())[::250] + [catalogue["humaneval-0"]]
    for e in sample:
        report = grade(e, e.reference)
        assert report.passed != bool(e.note), (e.id, report.to_dict())
        assert not grade(e, e.starter).passed, e.id


@pytest.mark.slow
def test_every_reference_solution_passes_but_the_known_broken(catalogue):
    failing = {e.id for e in catalogue.values() if not grade(e, e.reference).passed}
    assert failing == set(BROKEN)
    assert {f"mbpp-{k.split('/')[1]}" for k in KNOWN_BROKEN} <= set(BROKEN)


def test_grading_shows_each_test_with_expected_actual_error_line_and_timeout(catalogue):
    e = catalogue["mbpp-2"]
    wrong = grade(e, WRONG)
    assert [t.status for t in wrong.tests] == ["failed"] * 3
    assert (wrong.tests[0].expected, wrong.tests[0].actual) == ("(4, 5)", "(3, 4, 5, 6, 7, 10)")
    assert grade(e, RIGHT).passed
    partly = grade(e, RIGHT.replace("return", "print('hi')\n    if a[0] == 1:\n        return ()\n    return"))
    assert [t.status for t in partly.tests] == ["passed", "failed", "passed"] and partly.tests[0].output == "hi\n"
    crash = grade(e, "def similar_elements(a, b):\n    x = 1\n    return a[99]\n")
    assert crash.tests[0].status == "error" and crash.tests[0].error.startswith("IndexError")
    assert (crash.tests[0].line, crash.tests[0].line_text) == (3, "return a[99]")
    broken = grade(e, "def similar_elements(a, b)\n    return a\n")
    assert broken.load_error["line"] == 1 and "SyntaxError" in broken.load_error["error"]
    slow = grade(e, "def similar_elements(a, b):\n    if a[0] == 1:\n        while True: pass\n    return (4, 5)\n",
                 timeout=0.3)
    assert [t.status for t in slow.tests] == ["passed", "timeout", "failed"]
    stuck = grade(e, "def similar_elements(a, b):\n    return sum(range(10**12))\n", timeout=0.3, budget=2)
    assert stuck.tests[0].status == "timeout" and all(t.status in ("timeout", "not run") for t in stuck.tests)


def test_hostile_code_is_contained_as_in_evaluation(catalogue, tmp_path):
    e = catalogue["mbpp-2"]
    target = tmp_path / "owned"
    escape = grade(e, f"open({str(target)!r}, 'w').write('x')\n" + RIGHT)
    assert not target.exists() and escape.load_error is not None
    exits = grade(e, "import os\ndef similar_elements(a, b):\n    os._exit(0)\n")
    assert not exits.passed and exits.tests[0].status == "error"
    net = grade(e, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n" + RIGHT)
    assert net.load_error is not None
    forged = grade(e, "print('@@0123456789abcdef:{\"done\": true}')\n" + WRONG)
    assert not forged.passed


def test_learner_exercises_need_asserts():
    made = custom(1, "Answer", "Return 42.", "import math\nassert answer() == 42\nassert answer() > 0\n")
    assert made.tests == ("assert answer() == 42", "assert answer() > 0") and made.setup == "import math"
    assert grade(made, "def answer():\n    return 42\n").passed
    with pytest.raises(ExerciseError, match="assert"):
        custom(2, "t", "s", "x = 1\n")
    with pytest.raises(ExerciseError, match="do not parse"):
        custom(3, "t", "s", "assert (\n")


def _writer(db: str, n: int) -> None:
    p = Progress(db)
    for i in range(n):
        p.record_attempt("mbpp-2", f"# {i}", False, 0, 3, 1.0)
        print(i, flush=True)


def test_progress_survives_two_writers_and_a_killed_process(tmp_path):
    db = str(tmp_path / "p.sqlite")
    Progress(db)
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_learn import _writer; "
    two = [subprocess.Popen([sys.executable, "-c", code + f"_writer({db!r}, 40)"], stdout=subprocess.PIPE)
           for _ in range(2)]
    assert [p.wait(60) for p in two] == [0, 0]
    assert Progress(db).summary()["mbpp-2"]["attempts"] == 80
    victim = subprocess.Popen([sys.executable, "-c", code + f"_writer({db!r}, 100000)"], stdout=subprocess.PIPE,
                              text=True)
    done = [victim.stdout.readline() for _ in range(20)]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert len(done) == 20
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert Progress(db).summary()["mbpp-2"]["attempts"] >= 80 + 20  # every committed attempt is there
    lines = [json.loads(line) for line in Progress(db).export()]
    assert {line["kind"] for line in lines} == {"attempt"} and len(lines) >= 100


class Canned:
    """A stand-in chat model that always says `reply` (the spoiler filter is what is under test)."""

    name = "canned"

    def __init__(self, reply: str) -> None:
        self.reply, self.calls = reply, 0

    def stream_chat(self, messages, **options):
        self.calls += 1
        yield self.reply

    def chat(self, messages, **options):
        return "".join(self.stream_chat(messages, **options))


def test_spoiler_filter_withholds_hints_that_solve_the_exercise(catalogue):
    e = catalogue["mbpp-2"]
    spoiler = Canned(f"Try this:\n```python\n{RIGHT}```\n")
    h = hint(spoiler, e, WRONG)
    assert h.withheld and spoiler.calls == 3 and "def " not in h.text and "(4, 5)" in h.text
    fixed_line = Canned("Change the operator: `|` should be `&`, like\n```\n"
                        "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n```")
    assert hint(fixed_line, e, WRONG).withheld
    nudge = Canned("Which elements belong to both tuples? Look at the set operator you use.")
    h = hint(nudge, e, WRONG)
    assert not h.withheld and h.text == nudge.reply and nudge.calls == 1
    wrong_code = Canned(f"Maybe:\n```python\n{WRONG}```")
    assert not hint(wrong_code, e, WRONG).withheld
    assert is_spoiler(e, "", RIGHT)  # bare code counts as well as fenced code


def test_tidy_drops_an_echo_and_stops_a_loop():
    prompt = "Explain this:\nx = 1"
    assert "".join(tidy(iter(["Explain ", "this:\nx = 1", "\nIt sets x."]), prompt)) == "\nIt sets x."
    looping = "".join(tidy(iter(["Sure. "] + ["again and again! "] * 10), prompt))
    assert looping.startswith("Sure. again and again!") and looping.count("again and again!") <= 3


BROKEN_FILES = {
    "a.py": ("def add(a, b)\n    return a + b\n\nprint(add(1, 2)\n", "def add(a, b):\n"),
    "a.js": ("function add(a, b) {\n  return a + b;\n\nconsole.log(add(1, 2));\n", "+}"),
    "A.java": ("class A {\n  int add(int a, int b) {\n    return a + b\n  }\n}\n", "+    return a + b;"),
    "a.go": ("package main\n\nfunc add(a int, b int) int {\n\treturn a + b\n\nfunc main() {}\n", "+}"),
}


@pytest.mark.parametrize("name", list(BROKEN_FILES))
def test_codegemma_fix_locates_and_corrects_syntax_errors(name, tiny_checkpoint, tmp_path, capsys):
    source, expected = BROKEN_FILES[name]
    path = tmp_path / name
    path.write_text(source)
    if name == "a.py":
        assert main(["fix", str(path), "--model", str(tiny_checkpoint)]) == 0
        assert expected in capsys.readouterr().out and path.read_text() == source  # without --write: unchanged
    assert main(["fix", str(path), "--model", str(tiny_checkpoint), "--write"]) == 0
    out = capsys.readouterr().out
    assert f"{path}:" in out and ": error: " in out and expected in out
    language = {"py": "python", "js": "javascript", "java": "java", "go": "go"}[name.rsplit(".", 1)[1]]
    assert problems(path.read_text(), language) == []
    assert main(["fix", str(path)]) == 0 and "no syntax errors" in capsys.readouterr().err


def test_a_correction_must_parse_and_stay_small(tiny_checkpoint):
    from codegemma import load

    broken = "def f(:\n    return 1\n" + "x = 1\n" * 30
    real = fix(broken, "python", load(tiny_checkpoint))  # a random model: whatever it says, the rule holds
    assert real.problems and real.fixed is not None and problems(real.fixed, "python") == []
    assert changed_lines(broken, real.fixed) <= max_changed_lines(broken)
    big = fix(broken, "python", Canned("```python\n" + "y = 2\n" * 20 + "```"))
    assert big.rejected == ["model proposal: changes 23 lines, more than 3"] and big.source == "parser"
    unparsed = fix(broken, "python", Canned("```python\ndef f(:\n    return 2\n```"))
    assert "does not parse" in unparsed.rejected[0]
    good = fix("def f(a:\n    return 1\n", "python", Canned("```python\ndef f(a):\n    return 1\n```"))
    assert good.source == "model" and good.fixed == "def f(a):\n    return 1\n" and "+def f(a):" in good.diff


@pytest.mark.parametrize("argv, message", [
    (["fix", "{tmp}/missing.py"], "cannot read"),
    (["fix", "{tmp}/notes.txt"], "cannot tell the language"),
    (["fix", "{tmp}/a.py", "--language", "cobol"], "unknown language"),
    (["explain", "{tmp}/a.py:3-9", "--model", "{ckpt}"], "out of range"),
    (["explain", "{tmp}/empty.py", "--model", "{ckpt}"], "nothing to explain"),
    (["learn", "--port", "0", "--db", "{tmp}/p.sqlite"], "--port"),
    (["learn", "--db", "{tmp}/notes.txt", "--export", "-"], "progress database"),
])
def test_bad_input_is_one_clear_error(argv, message, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "a.py").write_text("def f(:\n    pass\n")
    (tmp_path / "notes.txt").write_text("not a database, not code\n" * 100)
    (tmp_path / "empty.py").write_text("\n")
    assert main([a.format(tmp=tmp_path, ckpt=tiny_checkpoint) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("codegemma: error:") and message in err and len(err.splitlines()) == 1


def test_codegemma_explain_streams_a_range(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "a.py"
    path.write_text("import os\n\ndef f(x):\n    return x + 1\n")
    assert main(["explain", f"{path}:3-4", "--model", str(tiny_checkpoint), "--max-tokens", "4"]) == 0
    assert "explaining" in capsys.readouterr().err


class App:
    """`codegemma learn` as a real process on a free loopback port."""

    def __init__(self, model: Path, db: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = db.with_suffix(f".{self.port}.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "codegemma.cli", "learn", "--model", str(model),
                                          "--port", str(self.port), "--db", str(db)], stderr=log)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(f"{self.url}/api/info", timeout=1)
                return
            except httpx.TransportError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.2)
        raise TimeoutError("codegemma learn did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def test_the_whole_flow_over_http_survives_a_killed_app(tiny_checkpoint, tmp_path):
    db = tmp_path / "progress.sqlite"
    app = App(tiny_checkpoint, db)
    try:
        with httpx.Client(base_url=app.url, timeout=60) as client:
            assert client.get("/").status_code == 200 and "codegemma learn" in client.get("/").text
            info = client.get("/api/info").json()
            assert info["model"] == tiny_checkpoint.name
            listed = client.get("/api/exercises").json()["exercises"]
            assert len(listed) == 974 + 164 and listed[0]["progress"] is None
            page = client.get("/exercise/mbpp-2")
            assert page.status_code == 200 and 'id="code"' in page.text
            assert client.get("/exercise/nope").status_code == 404
            ex = client.get("/api/exercises/mbpp-2").json()
            assert "reference" not in ex and ex["starter"].startswith("def similar_elements(")
            wrong = client.post("/api/exercises/mbpp-2/run", json={"code": WRONG, "seconds": 30}).json()
            assert not wrong["passed"] and wrong["tests"][0]["expected"] == "(4, 5)"
            assert wrong["tests"][0]["actual"] == "(3, 4, 5, 6, 7, 10)"
            h = client.post("/api/exercises/mbpp-2/hint", json={"code": WRONG}).json()
            assert h["hint"] and h["model"] == tiny_checkpoint.name
            right = client.post("/api/exercises/mbpp-2/run", json={"code": RIGHT, "seconds": 15}).json()
            assert right["passed"] and right["n_passed"] == 3
            assert right["progress"] == {"attempts": 2, "solved": True, "hints": 1, "seconds": 45.0,
                                         "solved_in": ["python"]}
            _javascript_runs(client)
            explained = client.post("/api/explain", json={"code": RIGHT})
            assert explained.status_code == 200
            fixed = client.post("/api/fix", json={"code": "def f(a, b)\n    return a\n"}).json()
            assert fixed["problems"][0]["line"] == 1 and fixed["fixed"] == "def f(a, b):\n    return a\n"
            shown = client.post("/api/highlight", json={"code": "def f(): pass", "language": "python"}).json()
            assert '<span class="k">def</span>' in shown["html"]
            added = client.post("/api/exercises", json={"title": "Answer", "statement": "Return 42.",
                                                        "tests": "assert answer() == 42"})
            assert added.status_code == 201 and added.json()["id"] == "custom-1"
            assert client.post("/api/exercises", json={"title": "x", "statement": "y", "tests": "x = 1"}
                               ).status_code == 400
            refused = client.post("/api/exercises", json={"title": "x", "statement": "y", "tests": "assert f() == 1",
                                                          "reference": "def f():\n    return 2\n"})
            assert refused.status_code == 400 and "does not pass" in refused.json()["error"]
            assert client.post("/api/exercises/mbpp-2/run", json={"cod": "x"}).status_code == 422
            assert client.post("/api/explain", json={"code": " "}).status_code == 400
    finally:
        app.kill()  # killed, not stopped: nothing may be lost
    again = App(tiny_checkpoint, db)
    try:
        with httpx.Client(base_url=again.url, timeout=60) as client:
            ex = client.get("/api/exercises/mbpp-2").json()
            assert ex["progress"]["solved"] and ex["progress"]["attempts"] == 2 and ex["last_code"] == RIGHT
            js = client.get("/api/exercises/mbpp-2", params={"language": "javascript"}).json()
            assert js["last_code"] == RIGHT_JS and js["progress"]["attempts"] == 2
            assert ex["overall"]["solved_in"] == ["javascript", "python"]
            assert client.get("/api/exercises/custom-1").json()["title"] == "Answer"
            exported = [json.loads(line) for line in client.get("/api/export").text.splitlines()]
            assert [r["kind"] for r in exported].count("attempt") == 4 and exported[0]["kind"] == "attempt"
    finally:
        again.kill()
    out = subprocess.run([sys.executable, "-m", "codegemma.cli", "learn", "--db", str(db), "--export", "-"],
                         capture_output=True, text=True, env={**os.environ}, check=True).stdout
    assert len(out.splitlines()) == 6  # four attempts, one hint, one exercise


def _javascript_runs(client: httpx.Client) -> None:
    """The same exercise in JavaScript: BabelCode's prompt as the start, its driver's verdict, progress apart."""
    page = client.get("/api/exercises/mbpp-2", params={"language": "javascript"}).json()
    assert page["language"]["name"] == "JavaScript" and page["progress"] is None and page["last_code"] is None
    assert page["language"]["starter"].startswith("/**") and "function similarElements(testTup1, testTup2) {" \
        in page["language"]["starter"]
    assert page["language"]["tests"][0] == ["similarElements([3, 4, 5, 6], [5, 7, 4, 10])", "[4, 5]"]
    wrong = client.post("/api/exercises/mbpp-2/run", json={"code": WRONG_JS, "language": "javascript"}).json()
    assert not wrong["passed"] and wrong["tests"][0]["status"] == "failed" and wrong["tests"][0]["expected"] == "[4, 5]"
    right = client.post("/api/exercises/mbpp-2/run", json={"code": RIGHT_JS, "language": "javascript"}).json()
    assert right["passed"] and right["progress"]["attempts"] == 2 and right["progress"]["solved_in"] == ["javascript"]
    fixed = client.post("/api/fix", json={"code": "int f() {\n  return 1\n}\n", "language": "cpp"}).json()
    assert fixed["problems"][0]["line"] == 2 and "+  return 1;" in fixed["diff"] and "b/solution.cpp" in fixed["diff"]
