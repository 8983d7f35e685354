"""What every language shares: names in each case convention, the statement as a doc comment, the MBPP
`Examples:` block, and reading the driver's `TEST-<i>...<RESULT>` lines."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from .questions import Question, TestCase
from .schema import Type

FLOAT_PRECISION, DOUBLE_PRECISION = 1e-6, 1e-9  # BabelCode's tolerances, for float and double returns only
TEST_LINE = re.compile(r"^TEST-(\d+)\.\.\.(.+)$")


def tolerance(q: Question) -> float | None:
    """BabelCode compares a float or double return within a tolerance, anything else exactly."""
    return {"float": FLOAT_PRECISION, "double": DOUBLE_PRECISION}.get(q.returns.kind)


def arguments(q: Question, case: TestCase, literal: Callable[[object, Type], str]) -> list[str]:
    """A test case's arguments as one language's literals."""
    return [literal(v, t) for v, (_, t) in zip(case.inputs, q.params)]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def snake(name: str) -> str:
    """"remove_Occ" -> "remove_occ", "maxSum" -> "max_sum" (BabelCode splits names at case changes too)."""
    return re.sub(r"_+", "_", re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)).lower()


def statement(q: Question, language: str, examples: bool) -> str:
    """The problem text for a language: "python" renamed in three casings and, with `examples` (MBPP, as
    in CodeGemma's model card), the first two tests as Python doctest lines."""
    text = q.text.strip()
    if examples:
        calls = [f">>> {q.entry}({', '.join(map(repr, t.inputs))})\n{t.output!r}" for t in q.tests[:2]]
        text += "\n\nExamples:\n" + "\n".join(calls)
    for old, new in (("Python", language.capitalize()), ("python", language.lower()), ("PYTHON", language.upper())):
        text = text.replace(old, new)
    return text


def commented(text: str, marker: str) -> str:
    """Each line of `text` behind a comment marker (" * ", "// ", "/// " ...), trailing blanks trimmed."""
    return "\n".join((marker + line).rstrip() for line in text.splitlines())


def nonce() -> str:
    """A token the program's author cannot guess: the driver prints it last, so a program that prints fake
    PASSED lines and leaves early does not pass."""
    return secrets.token_hex(8)


def test_results(stdout: str) -> dict[int, str]:
    """The driver's lines: test index -> PASSED, FAILED or the exception's name."""
    results = {}
    for line in stdout.splitlines():
        m = TEST_LINE.match(line.strip())
        if m:
            results[int(m.group(1))] = m.group(2)
    return results


def verdict(stdout: str, tests: int, end: str | None, exited: int | None, timed_out: bool) -> tuple[str, str]:
    """(status, detail): passed only if it exited 0 in time, printed the end token (where given) and every
    test printed PASSED; else timeout, error (a test raised, or the program did not run) or failed."""
    if timed_out:
        return "timeout", "timed out"
    results = test_results(stdout)
    ran_to_end = end is None or end in stdout
    if exited == 0 and ran_to_end and all(results.get(i) == "PASSED" for i in range(tests)):
        return "passed", ""
    raised = sorted({r for r in results.values() if r not in ("PASSED", "FAILED")})
    failed = [i for i in range(tests) if results.get(i) == "FAILED"]
    if raised or exited != 0 or not ran_to_end or len(results) < tests:
        return "error", f"tests raised {', '.join(raised)}" if raised else f"exit status {exited}"
    return "failed", f"tests {', '.join(map(str, failed))} failed"


def result(q: Question, outcome, end: str, compile_failed: bool = False) -> dict:
    """A scored sample (status, passed, error, duration, tests: P/F/E per test) from a sandbox Outcome."""
    status, detail = verdict(outcome.stdout, len(q.tests), end, outcome.returncode, outcome.status == "timeout")
    if status == "error" and compile_failed:
        status, detail = "compile error", "the program did not compile"
    error = "" if status == "passed" else (outcome.stderr.strip()[-500:] or detail)
    results = test_results(outcome.stdout)
    pattern = "".join({"PASSED": "P", "FAILED": "F"}.get(results.get(i, ""), "E") for i in range(len(q.tests)))
    return {"status": status, "passed": status == "passed", "error": error, "duration": round(outcome.duration, 4),
            "tests": pattern}
