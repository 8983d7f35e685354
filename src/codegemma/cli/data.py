"""`codegemma data build`: repositories -> packed, FIM-transformed token shards, on datatrove executors."""

from __future__ import annotations

import argparse
import json

from .common import CliError

HELP = "build FIM training data from source repositories"


def register(p: argparse.ArgumentParser) -> None:
    data = p.add_subparsers(dest="data_command", required=True)
    b = data.add_parser("build", help="repositories -> packed, FIM-transformed token shards")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a folder of repositories, a repository folder, or JSONL/Parquet rows (repo, path, content)")
    b.add_argument("--out", required=True)
    b.add_argument("--tokenizer", required=True, help="model folder, .gguf file or 'default' (needs FIM tokens "
                                                      "unless --fim-rate 0)")
    b.add_argument("--seq-len", type=int, default=8192)
    b.add_argument("--fim-rate", type=float, default=0.8)
    b.add_argument("--spm-rate", type=float, default=0.5)
    b.add_argument("--spm-layout", default="spm", choices=["spm", "spm-bavarian"])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--executor", default="local", choices=["local", "slurm"],
                   help="datatrove's LocalPipelineExecutor (this machine) or SlurmPipelineExecutor (sbatch jobs)")
    b.add_argument("--tasks", type=int, default=1, help="tasks per parallel stage (each owns a block of shards)")
    b.add_argument("--workers", type=int, default=1, help="local executor: tasks run at once on this machine")
    b.add_argument("--repos-per-shard", type=int, default=16)
    b.add_argument("--keep-text", action="store_true", help="also write text/*.jsonl, one line per document")
    b.add_argument("--no-decontaminate", action="store_true")
    b.add_argument("--data-dir", default=None, help="benchmark files for decontamination (see `eval`)")
    slurm = b.add_argument_group("Slurm (with --executor slurm)")
    slurm.add_argument("--partition", default="cpu")
    slurm.add_argument("--time", default="24:00:00", help="time limit of each task")
    slurm.add_argument("--cpus-per-task", type=int, default=1)
    slurm.add_argument("--mem-per-cpu-gb", type=int, default=4)
    slurm.add_argument("--env-command", default=None,
                       help="shell command run before each task (default: put this Python's bin folder first on PATH)")


def run(args: argparse.Namespace) -> int:
    from ..data.fim import FimSettings
    from ..data.pipeline import BuildSettings, SlurmSettings, build

    if not (0 <= args.fim_rate <= 1 and 0 <= args.spm_rate <= 1):
        raise CliError("--fim-rate and --spm-rate must be in [0, 1]")
    if args.seq_len < 16 or min(args.tasks, args.workers, args.repos_per_shard) < 1:
        raise CliError("--seq-len must be >= 16, --tasks, --workers and --repos-per-shard >= 1")
    slurm = SlurmSettings(partition=args.partition, time=args.time, cpus_per_task=args.cpus_per_task,
                          mem_per_cpu_gb=args.mem_per_cpu_gb, env_command=args.env_command)
    settings = BuildSettings(seq_len=args.seq_len, seed=args.seed, tasks=args.tasks, workers=args.workers,
                             executor=args.executor, slurm=slurm, keep_text=args.keep_text,
                             repos_per_shard=args.repos_per_shard, decontaminate=not args.no_decontaminate,
                             data_dir=args.data_dir,
                             fim=FimSettings(fim_rate=args.fim_rate, spm_rate=args.spm_rate,
                                             spm_layout=args.spm_layout))
    print(json.dumps(build(args.inputs, args.out, args.tokenizer, settings), indent=2))
    return 0
