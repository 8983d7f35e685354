"""Grading a learner's code: each test of an exercise on its own, in the evaluation sandbox.

The learner's code and the tests run in one sandboxed process (eval/sandbox.py: limits, no network, user
nobody) driven by harness_program.py, which reports each test as it goes. A test that hangs is stopped by a
per-test timer; one that the timer cannot stop (a long C call), or that kills the process, is recorded
from the outside (timeout or crash) and the tests after it run in a fresh process.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..eval.sandbox import Limits, interpreter, run_program
from .exercises import Exercise

HARNESS = Path(__file__).with_name("harness_program.py")
TEST_TIMEOUT = 5.0  # seconds per test (and for loading the learner's code)
BUDGET = 20.0  # seconds for all the tests of one run; tests not started by then are "not run"


@dataclass
class TestResult:
    index: int
    code: str
    status: str  # passed, failed, error, timeout, not run
    expected: str | None = None
    actual: str | None = None
    error: str | None = None
    line: int | None = None  # in the learner's code
    line_text: str = ""
    output: str = ""  # what the learner's code printed during this test
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Report:
    tests: list[TestResult]
    load_error: dict | None = None  # the learner's code failed before any test (syntax error, exception, hang)
    seconds: float = 0.0
    runs: int = 0  # sandbox processes used

    @property
    def passed(self) -> bool:
        return self.load_error is None and all(t.passed for t in self.tests)

    @property
    def n_passed(self) -> int:
        return sum(t.passed for t in self.tests)

    def first_failure(self) -> TestResult | None:
        return next((t for t in self.tests if not t.passed), None)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "n_passed": self.n_passed, "n_tests": len(self.tests),
                "load_error": self.load_error, "seconds": round(self.seconds, 3),
                "tests": [{**asdict(t), "passed": t.passed} for t in self.tests]}


def grade(exercise: Exercise, code: str, *, timeout: float | None = None, budget: float = BUDGET) -> Report:
    """Runs every test of `exercise` against `code`; never raises for anything the code does. timeout: seconds
    per test (default: the exercise's own limit, else TEST_TIMEOUT); budget: seconds for all of them."""
    timeout = timeout or exercise.time_limit or TEST_TIMEOUT
    budget = max(budget, 2 * timeout)
    start = time.perf_counter()
    results: dict[int, TestResult] = {}
    report = Report([])
    first = 0
    while first < len(exercise.tests) and report.load_error is None:
        left = budget - (time.perf_counter() - start)
        if left <= 0:
            break
        first = _run_from(exercise, code, first, timeout, left, results, report)
    skipped = f"not run: the {budget:g} s allowed for all the tests ran out"
    report.tests = [results.get(i) or TestResult(i, t, "not run", error=skipped) for i, t in enumerate(exercise.tests)]
    if report.load_error is not None:
        for t in report.tests:
            t.status, t.error = "error" if report.load_error["status"] != "timeout" else "timeout", "not run: see above"
    report.seconds = time.perf_counter() - start
    return report


def _run_from(exercise: Exercise, code: str, first: int, timeout: float, budget: float, results: dict,
              report: Report) -> int:
    """One sandbox process running tests first.. for at most `budget` seconds; returns the index to go on from."""
    nonce = f"@@{secrets.token_hex(8)}:"
    config = {"tests": list(exercise.tests), "setup": exercise.setup, "start": first, "timeout": timeout,
              "budget": budget, "nonce": nonce}
    wall = min(budget, timeout * (len(exercise.tests) - first + 1)) + 1.0
    limits = Limits(timeout=wall, cpu_seconds=math.ceil(wall), output_bytes=1 << 20)
    outcome = run_program({"harness.py": HARNESS.read_text(encoding="utf-8"), "solution.py": code,
                           "tests.json": json.dumps(config)},
                          [interpreter(), "-I", "-X", "utf8", "harness.py"], limits)
    report.runs += 1
    running, last = None, first - 1
    for line in outcome.stdout.split("\n"):
        if not line.startswith(nonce):
            continue
        record = json.loads(line[len(nonce):])
        if "load" in record:
            report.load_error = record["load"]
            return len(exercise.tests)
        if "done" in record:
            return len(exercise.tests)
        index = record.pop("index")
        if record["status"] == "started":
            running = index
            continue
        running, last = None, index
        results[index] = TestResult(index, exercise.tests[index], **_known(record))
    if running is None and last >= first:  # stopped between two tests: go on with the next
        return last + 1
    if running is None:  # died before its first test: the learner's code took the process down while loading
        report.load_error = {"status": outcome.status if outcome.status == "timeout" else "error",
                             "error": _death(outcome), "line": None, "line_text": ""}
        return len(exercise.tests)
    status = "timeout" if outcome.status == "timeout" else "error"
    results[running] = TestResult(running, exercise.tests[running], status, error=_death(outcome))
    return running + 1


def _known(record: dict) -> dict:
    keys = {"status", "expected", "actual", "error", "line", "line_text", "output", "message"}
    return {k: v for k, v in record.items() if k in keys and v is not None}


def _death(outcome) -> str:
    if outcome.status == "timeout":
        return f"timed out: still running after {outcome.duration:.1f} s"
    tail = outcome.stderr.strip().splitlines()[-1:] or [f"exit status {outcome.returncode}"]
    return f"the program stopped: {tail[0]}"
