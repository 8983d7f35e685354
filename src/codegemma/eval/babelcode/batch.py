"""Several Java or Kotlin programs compiled by one javac or kotlinc call, then each run on its own.

A compiler's start dominates one program's compile (kotlinc: 4-8 s here), so `eval score` and `eval
run` compile BATCH programs at once. Each program is put in its own package (`p0`, `p1`, ...), so
their classes (`p3.Program`, `p3.ProgramKt`) never clash and an error in one file is that file's own.
The compile runs in the sandbox like any program (as nobody, no network); the classes of each
program are then copied into a fresh sandbox folder of its own and run there, alone, so no program
can touch another's classes.

A compile error in one program must not fail the others: the files the compiler names in its error
lines are compile errors, and the rest are compiled again without them; a failure that names no file
(a crash, a timeout) falls back to compiling those programs one by one.
"""

from __future__ import annotations

import re
from dataclasses import replace
from types import ModuleType

from ..sandbox import Outcome, run_program
from .common import nonce, result
from .questions import Question

BATCH = 8  # programs per compiler call (see README: Kotlin's time a program falls from about 5 s to about 1 s)
ERROR_LINE = re.compile(r"(?:^|/)(p\d+)/[^/:\n]+:\d+(?::\d+)?: error:", re.M)


def batched(language: str) -> bool:
    from . import LANGUAGES

    return hasattr(LANGUAGES[language], "batch_compile_argv")


def run_batch(language: str, items: list[tuple[Question, str, str]], timeout: float) -> list[dict]:
    """Scores (question, prompt, completion) items with one compile for all of them where it succeeds;
    returns one result per item, as `babelcode.run` does."""
    from . import LANGUAGES

    lang = LANGUAGES[language]
    ends = [f"END-{nonce()}" for _ in items]
    sources = {f"p{i}": lang.program(q, prompt, completion, ends[i], package=f"p{i}")
               for i, (q, prompt, completion) in enumerate(items)}
    classes, errors = _compile(lang, sources)
    results = []
    for i, (q, _, _) in enumerate(items):
        package = f"p{i}"
        if package in errors:
            outcome, failed = errors[package], True
        else:
            outcome = run_program(classes[package], lang.batch_run_argv(package), lang.batch_run_limits(timeout))
            failed = False
        results.append(result(q, outcome, ends[i], compile_failed=failed))
    return results


def _compile(lang: ModuleType, sources: dict[str, str]) -> tuple[dict[str, dict[str, bytes]], dict[str, Outcome]]:
    """(package -> its class files, package -> the compile's Outcome for those that did not compile)."""
    classes: dict[str, dict[str, bytes]] = {}
    errors: dict[str, Outcome] = {}
    pending = sorted(sources, key=lambda p: int(p[1:]))
    while pending:
        files = {lang.batch_source(p): sources[p] for p in pending}
        outcome = run_program(files, lang.batch_compile_argv(list(files)), lang.batch_compile_limits(len(files)),
                              collect="out")
        if outcome.status == "passed":
            for package in pending:
                prefix = f"out/{package}/"
                classes[package] = {path: data for path, data in outcome.files.items() if path.startswith(prefix)}
            return classes, errors
        named = {m.group(1) for m in ERROR_LINE.finditer(outcome.stderr)} & set(pending)
        if not named and len(pending) > 1:  # nothing to go by: one at a time
            for package in pending:
                more_classes, more_errors = _compile(lang, {package: sources[package]})
                classes.update(more_classes)
                errors.update(more_errors)
            return classes, errors
        for package in named or pending:
            errors[package] = _own_lines(outcome, package)
        pending = [p for p in pending if p not in errors]
    return classes, errors


def _own_lines(outcome: Outcome, package: str) -> Outcome:
    """The compile's outcome as one program sees it: only its own error lines (and what follows each)."""
    blocks = re.split(r"\n(?=\S*p\d+/[^/:\n]+:\d+)", outcome.stderr)
    own = "\n".join(b for b in blocks if re.match(rf"\S*{package}/", b)) or outcome.stderr
    return replace(outcome, stdout="", stderr=own)
