"""The repository-completion benchmark: tasks held out of installed packages, run without and with
repository context, scored by exact match and edit similarity."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codegemma.eval.repo_completion import PACKAGES, edit_similarity, package_root, tasks_for


def test_tasks_hold_out_a_line_that_uses_a_sibling_module():
    root = package_root("starlette")
    tasks = tasks_for("starlette", root, per_package=10)
    assert len(tasks) == 10 and len({t.path for t in tasks}) == 10
    for t in tasks:
        text = (root.parent / t.path).read_text(encoding="utf-8")
        assert t.prefix + t.target + t.suffix == text  # nothing else removed
        assert text.splitlines()[t.line - 1].strip() == t.target.strip()
        assert not t.target.startswith(("import ", "from "))
    assert tasks == tasks_for("starlette", root, per_package=10)  # deterministic


def test_edit_similarity():
    assert edit_similarity("return x", "return x") == 1.0
    assert edit_similarity("abc", "abd") == pytest.approx(2 / 3)
    assert edit_similarity("", "abc") == 0.0


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codegemma.cli", "eval", "run", "repo-completion", *args],
                          capture_output=True, text=True)


def test_a_small_run_on_a_tiny_model(tiny_checkpoint, tmp_path):
    out = tmp_path / "rc"
    r = _run(["--model", str(tiny_checkpoint), "--out", str(out), "--limit", "3", "--max-tokens", "4"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["tasks"] == 3 and set(summary["with_context"]) >= {"exact_match", "edit_similarity"}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((row["task_id"], row["context"]) for row in rows) == sorted(
        (t, c) for t in {row["task_id"] for row in rows} for c in (False, True))
    by = {(row["task_id"], row["context"]): row for row in rows}
    assert any(by[(t, True)]["context_files"] > 0 for t, _ in by)  # the index found related code
    assert all(by[(t, True)]["prompt_tokens"] >= by[(t, False)]["prompt_tokens"] for t, _ in by)
    again = _run(["--model", str(tiny_checkpoint), "--out", str(out), "--limit", "3", "--max-tokens", "4"])
    assert again.returncode == 0 and len((out / "results.jsonl").read_text().splitlines()) == 6  # resumed
    other = _run(["--model", str(tiny_checkpoint), "--out", str(out), "--limit", "3", "--max-tokens", "5"])
    assert other.returncode == 1 and "another run" in other.stderr


@pytest.mark.slow
def test_the_full_benchmark_on_the_default_model(tmp_path):
    r = _run(["--model", "default", "--dtype", "bfloat16", "--out", str(tmp_path / "rc")])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["tasks"] >= 5 * len(PACKAGES)
