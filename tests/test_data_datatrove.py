"""The data pipeline on datatrove: a killed build re-run to the same shards, the Slurm executor through a local
stand-in for sbatch/srun, and build files (go.mod) reaching the packing step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codegemma.data.fim import FimSettings
from codegemma.data.pipeline import BuildSettings, build


def spelled(n: int) -> str:
    """A number as letters: MinHash normalises digits away, so names must differ in words."""
    return "".join("abcdefghij"[int(c)] for c in str(n))


def many_repositories(root: Path, n: int, files: int) -> Path:
    """n repositories of `files` distinct Python modules each that import one another (nothing is a duplicate)."""
    for r in range(n):
        for f in range(files):
            body = "".join(f"def {spelled(r)}_{spelled(f)}_{spelled(k)}(x):\n    return x * {spelled(k * r)}\n\n"
                           for k in range(40))
            imports = f"from pkg import m{f - 1}\n\n" if f else ""
            path = root / f"repo{r:03d}" / "pkg" / f"m{f}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{imports}# repository {r}, module {f}\n{body}")
    return root


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*"))}


@pytest.mark.slow  # ~12 s: three builds, two of them through the CLI in a subprocess
def test_a_killed_build_reruns_to_the_same_shards(tmp_path, sp_folder):
    corpus = many_repositories(tmp_path / "repos", 24, 8)
    args = dict(seq_len=512, repos_per_shard=2, tasks=4, decontaminate=False)
    reference = tmp_path / "reference"
    stats = build([corpus], reference, str(sp_folder), BuildSettings(**args))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "codegemma.cli", "data", "build", str(corpus), "--out", str(out), "--tokenizer",
           str(sp_folder), "--seq-len", "512", "--repos-per-shard", "2", "--tasks", "4", "--no-decontaminate"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    second_task_shard = out / "shard-00003.json"  # task 1 of 4 owns shards 3, 4 and 5
    deadline = time.monotonic() + 120
    while not second_task_shard.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    # the machine dies: the build process (with --workers 1 it runs the tasks itself) and its helpers
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    completed = out / "logs" / "7-pack" / "completions"
    assert second_task_shard.exists() and not (completed / "00001").exists(), "killed outside the packing task"
    assert not (out / "shard-00005.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert shard_bytes(out) == shard_bytes(reference)
    rerun = json.loads(again.stdout)
    assert rerun["stages"] == stats["stages"] and rerun["input"]["files"] == 24 * 8
    assert rerun["stages"]["pack"]["out"] == rerun["stages"]["filter"]["out"] == 24 * 8


FAKE_SBATCH = """#!/bin/bash
# A local stand-in for Slurm's sbatch: runs every array task of the job script now, one after another.
script="${@: -1}"
for a in "$@"; do case "$a" in --export=ALL,*) export "${a#--export=ALL,}";; esac; done
cp "$script" "$SLURM_RECORD/job-$(ls "$SLURM_RECORD" | wc -l).slurm"
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*-[0-9]*\\).*/\\1/p' "$script")
for i in $(seq "${range%-*}" "${range#*-}"); do
    SLURM_ARRAY_TASK_ID=$i SLURM_NODELIST=localhost SLURM_JOB_ID=1 bash "$script" >>"$SLURM_RECORD/jobs.log" 2>&1 \\
        || { echo "array task $i failed" >&2; exit 1; }
done
echo "Submitted batch job $(ls "$SLURM_RECORD" | wc -l)"
"""
FAKE_SCONTROL = """#!/bin/bash
echo localhost  # `scontrol show hostnames $SLURM_NODELIST`
"""
FAKE_SRUN = """#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in -n) shift 2;; -*) shift;; *) break;; esac; done
exec "$@"
"""


@pytest.mark.slow  # ~35 s: every Slurm array task is a fresh Python process, as on a cluster
def test_slurm_executor_runs_its_sbatch_scripts(tmp_path, sp_folder, monkeypatch):
    """datatrove's SlurmPipelineExecutor writes and submits one sbatch array job per stage; a stand-in sbatch
    runs each script as Slurm would (SLURM_ARRAY_TASK_ID per task) and the shards equal the local executor's."""
    corpus = many_repositories(tmp_path / "repos", 6, 3)
    bin_dir, record = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    python_bin = str(Path(sys.executable).parent)  # the job script puts it first on PATH itself
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != python_bin]
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), *path]))
    monkeypatch.setenv("SLURM_RECORD", str(record))
    settings = BuildSettings(seq_len=256, repos_per_shard=2, tasks=2, decontaminate=False,
                             fim=FimSettings(fim_rate=0.5))
    local = build([corpus], tmp_path / "local", str(sp_folder), settings)
    submitted = build([corpus], tmp_path / "slurm-out", str(sp_folder),
                      BuildSettings(**{**settings.__dict__, "executor": "slurm"}))
    assert set(submitted["submitted"]) == {"1-read-filter", "2-exact-signatures", "3-exact-find",
                                           "4-minhash-signatures", "5-minhash-buckets", "6-minhash-cluster",
                                           "7-pack", "8-index"}
    scripts = sorted(record.glob("job-*.slurm"))
    first = scripts[0].read_text()
    assert "#SBATCH --array=0-1" in first and "#SBATCH --partition=cpu" in first and "launch_pickled_pipeline" in first
    assert f"export PATH={Path(sys.executable).parent}:$PATH" in first
    assert any("#SBATCH --array=0-15" in s.read_text() for s in scripts)  # one task per MinHash band
    assert shard_bytes(tmp_path / "slurm-out") == shard_bytes(tmp_path / "local")
    assert json.loads((tmp_path / "slurm-out" / "stats.json").read_text())["stages"] == local["stages"]


def test_go_mod_reaches_packing(tmp_path, sp_folder):
    repo = tmp_path / "repos" / "wordcount"
    files = {"server/go.mod": "module example.com/wordcount\n\ngo 1.22\n",  # the module lives in server/
             "server/main.go": 'package main\n\nimport "example.com/wordcount/textutil"\n\n'
                        'func main() { println(textutil.Count("a b")) }\n',
             "server/textutil/split.go": 'package textutil\n\nimport "strings"\n\nfunc Split(s string) []string '
                                  '{ return strings.Fields(s) }\n',
             "server/textutil/count.go": "package textutil\n\nfunc Count(s string) int { return len(Split(s)) }\n"}
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    out = tmp_path / "out"
    stats = build([tmp_path / "repos"], out, str(sp_folder),
                  BuildSettings(seq_len=4096, keep_text=True, decontaminate=False, fim=FimSettings(fim_rate=0.0)))
    assert stats["stages"]["filter"]["dropped"] == {"unsupported-language": 1}  # go.mod: read, not packed
    doc = json.loads((out / "text" / "shard-00000.jsonl").read_text().splitlines()[0])
    assert [f["path"] for f in doc["files"]][-1] == "server/main.go"


def test_chunked_minhash_signature_equals_datatrove_s():
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    from codegemma.data.pipeline import MINHASH
    from codegemma.data.steps import CodeWords, MinhashSignatures

    text = " ".join(f"w{spelled(i)} {spelled(i * 7 % 1000)}" for i in range(6000))  # > one chunk of shingles
    ours = MinhashSignatures("unused-ours", MINHASH, language=CodeWords())
    theirs = MinhashDedupSignature("unused-theirs", MINHASH, language=CodeWords())
    shingles = theirs.get_shingles(text)
    assert len(shingles) > 2 * ours.chunk
    assert ours.get_signature(shingles) == theirs.get_signature(shingles)
