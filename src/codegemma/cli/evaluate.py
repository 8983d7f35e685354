"""`codegemma eval run | score | report`."""

from __future__ import annotations

import argparse
import json

from ..eval.data import BENCHMARKS
from .common import CliError, load_model, model_args

HELP = "evaluate on HumanEval, MBPP and HumanEval infilling"


def register(p: argparse.ArgumentParser) -> None:
    ev = p.add_subparsers(dest="eval_command", required=True)
    run_p = ev.add_parser("run", help="generate and score")
    run_p.add_argument("benchmark", choices=[*BENCHMARKS, "repo-completion"],
                       help="repo-completion: held-out lines of installed packages, without and with repository "
                            "context (eval/repo_completion.py)")
    model_args(run_p)
    run_p.add_argument("--samples-per-task", type=int, default=1)
    run_p.add_argument("--temperature", type=float, default=0.0)
    run_p.add_argument("--top-p", type=float, default=0.95)
    run_p.add_argument("--max-tokens", type=int, default=None, help="default: 512, or 128 for infilling")
    run_p.add_argument("--seed", type=int, default=0)
    run_p.add_argument("--parallel", type=int, default=None,
                       help="samples decoded together as rows of one pass (the server's continuous batching); "
                            "default 8 where the model's rows are independent (the text does not depend on it), else 1")
    run_p.add_argument("--out", required=True, help="results folder (an interrupted run resumes here)")
    _common(run_p)
    run_p.set_defaults(func=cmd_run)
    score = ev.add_parser("score", help="score given completions (JSONL: task_id, completion)")
    score.add_argument("benchmark", choices=BENCHMARKS)
    score.add_argument("--samples", required=True)
    score.add_argument("--out", required=True)
    _common(score)
    score.set_defaults(func=cmd_score)
    rep = ev.add_parser("report", help="markdown table of results beside the published CodeGemma numbers")
    rep.add_argument("dirs", nargs="+")
    rep.set_defaults(func=cmd_report)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None, help="only the first K problems")
    p.add_argument("--workers", type=int, default=2, help="programs run in parallel")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    p.add_argument("--data-dir", default=None,
                   help="folder with the benchmark files (default: the copies shipped in the package)")


def _settings(args: argparse.Namespace):
    from ..eval.harness import RunSettings

    for name in ("limit", "workers", "samples_per_task", "max_tokens", "parallel"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1")
    if args.timeout <= 0 or getattr(args, "temperature", 0) < 0:
        raise CliError("--timeout must be > 0 and --temperature >= 0")
    return RunSettings(samples_per_task=getattr(args, "samples_per_task", 1),
                       temperature=getattr(args, "temperature", 0.0), top_p=getattr(args, "top_p", 0.95),
                       max_tokens=getattr(args, "max_tokens", None), limit=args.limit, workers=args.workers,
                       timeout=args.timeout, seed=getattr(args, "seed", 0),
                       parallel=getattr(args, "parallel", None))


def cmd_run(args: argparse.Namespace) -> int:
    from ..eval.harness import run as run_benchmark

    settings = _settings(args)
    if args.benchmark == "repo-completion":
        from ..eval.repo_completion import RepoCompletionError
        from ..eval.repo_completion import run as run_repo

        cg = load_model(args)
        try:
            summary = run_repo(cg, args.out, limit=settings.limit, max_tokens=settings.max_tokens or 48)
        except RepoCompletionError as exc:
            raise CliError(str(exc)) from exc
        print(json.dumps(summary, indent=2))
        return 0
    cg = load_model(args)
    print(json.dumps(run_benchmark(args.benchmark, cg, args.out, settings, args.data_dir), indent=2))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..eval.harness import score

    print(json.dumps(score(args.benchmark, args.samples, args.out, _settings(args), args.data_dir), indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..eval.harness import report

    print(report(args.dirs))
    return 0


def run(args: argparse.Namespace) -> int:
    return args.func(args)
