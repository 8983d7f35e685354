"""Exercises in BabelCode's languages: the question BabelCode's converter makes of an MBPP or HumanEval problem
(eval/babelcode/), its prompt in each language as the starting code, and grading through BabelCode's own
test driver in the sandbox.

Python keeps its own grading (grading.py: every assert on its own, expected and actual values). In the other
languages the learner's file is the prompt (statement as a doc comment, then the signature) with a body;
it runs as BabelCode runs a completion: header, the code, the driver, one sandbox call that compiles and
runs. The driver prints `TEST-i...PASSED|FAILED|<exception>` per test, so each test's status, its expected
value (the test case, written in the language) and what the learner's code printed during it are known;
the actual value is not (the driver does not print it). A compile error is reported with its line in the
learner's code; a run that times out marks the test that was running as a time-out.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from ..errors import CodeGemmaError
from ..eval.babelcode import LANGUAGES as BABEL
from ..eval.babelcode.common import arguments, camel, nonce, test_results
from ..eval.babelcode.questions import Question, convert, humaneval
from ..eval.babelcode.schema import SchemaError
from ..eval.sandbox import Limits, run_program
from .exercises import Exercise
from .grading import BUDGET, Report, TestResult, grade

# id -> (name shown, Pygments lexer, tree-sitter grammar in fixing.BY_NAME, file extension)
LANGUAGES = {
    "python": ("Python", "python", "python", "py"), "cpp": ("C++", "cpp", "cpp", "cpp"),
    "csharp": ("C#", "csharp", "c_sharp", "cs"), "go": ("Go", "go", "go", "go"),
    "java": ("Java", "java", "java", "java"), "javascript": ("JavaScript", "javascript", "javascript", "js"),
    "kotlin": ("Kotlin", "kotlin", "kotlin", "kt"), "rust": ("Rust", "rust", "rust", "rs"),
}
TIMEOUT = 10.0  # seconds for one run, compiling included (Kotlin's module adds its compiler's allowance)
OUTPUT_BYTES = 1 << 16  # kept of the program's stdout and stderr
_INDENT = {"java": "        ", "csharp": "        "}  # methods inside `class Solution`


class LanguageError(CodeGemmaError, ValueError):
    """A language the exercise is not offered in, or whose toolchain is not installed here."""


@lru_cache(maxsize=1)
def questions() -> dict[str, Question]:
    """Exercise id -> BabelCode question: HumanEval as BabelCode fixes it, and every MBPP problem that
    BabelCode's converter accepts (BabelCode itself evaluates only MBPP's test split)."""
    from ..eval.data import read_json

    out = {f"humaneval-{q.task_id.split('/')[1]}": q for q in humaneval()[0]}
    for row in read_json("mbpp"):
        try:
            out[f"mbpp-{row['id']}"] = convert(row, f"MBPP/{row['id']}")
        except SchemaError:
            pass  # BabelCode leaves it out too: Python only
    return out


def offered(exercise_id: str) -> list[str]:
    """The languages an exercise can be done in: Python always, the others where BabelCode converts it."""
    return list(LANGUAGES) if exercise_id in questions() else ["python"]


def missing_toolchain(language: str) -> str | None:
    """None where `language` can run here, else what to install (the BabelCode module's own words)."""
    if language == "python":
        return None
    try:
        BABEL[language].run_argv()
    except CodeGemmaError as exc:
        return str(exc)
    return None


def question(exercise: Exercise, language: str) -> Question | None:
    """The BabelCode question for a non-Python language (None for Python); LanguageError if not offered."""
    if language not in LANGUAGES:
        raise LanguageError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    if language not in offered(exercise.id):
        raise LanguageError(f"{exercise.id} is offered in Python only: BabelCode does not convert its question")
    return None if language == "python" else questions()[exercise.id]


def function_name(q: Question, language: str) -> str:
    """The entry point's name as the language's prompt spells it."""
    module = BABEL[language]
    if hasattr(module, "function_name"):
        return module.function_name(q)
    if hasattr(module, "pascal"):
        return module.pascal(q.entry)
    return q.entry if language == "python" else camel(q.entry)


def prompt(exercise: Exercise, language: str) -> str:
    q = question(exercise, language)
    return BABEL[language].prompt(q, examples=exercise.source == "mbpp") if q else exercise.starter


def starter(exercise: Exercise, language: str) -> str:
    """The prompt (statement and signature), an empty body and the closing braces BabelCode's stop words cut."""
    if language == "python":
        return exercise.starter
    closer = getattr(BABEL[language], "CLOSER", "\n}")
    return f"{prompt(exercise, language)}\n{_INDENT.get(language, '    ')}// your code here{closer}\n"


def calls(exercise: Exercise, language: str) -> list[tuple[str, str]]:
    """(the call, the expected value) of each test, written in the language."""
    q = question(exercise, language)
    if q is None:
        return [(t, "") for t in exercise.tests]
    module = BABEL[language]
    name = function_name(q, language)
    return [(f"{name}({', '.join(arguments(q, c, module.literal))})", module.literal(c.output, q.returns))
            for c in q.tests]


def body(code: str, language: str) -> str:
    """The learner's file as BabelCode's completion: the closing braces its driver adds back taken off."""
    closer = getattr(BABEL[language], "CLOSER", "")
    text = code.rstrip()
    for _ in range(closer.count("}")):
        if not text.endswith("}"):
            return code  # not the shape the driver expects: the compiler says what is wrong
        text = text[:-1].rstrip()
    return text


def grade_babel(exercise: Exercise, language: str, code: str, *, timeout: float = TIMEOUT) -> Report:
    """Compiles and runs `code` with BabelCode's driver in the sandbox; one TestResult per test case."""
    q = question(exercise, language)
    module = BABEL[language]
    files, argv = module.run_argv()  # CodeGemmaError naming what to install
    end = f"END-{nonce()}"
    completion = body(code, language)
    source = module.program(q, "", completion, end)
    # CPU seconds beyond the wall-clock limit: a busy loop must end as a time-out, not race the CPU limit's kill
    limits = module.limits(timeout) if hasattr(module, "limits") else Limits(timeout=timeout,
                                                                               cpu_seconds=int(timeout) + 5)
    outcome = run_program({**files, module.SOURCE_FILE: source}, argv, replace(limits, output_bytes=OUTPUT_BYTES))
    finished = outcome.status != "timeout" and outcome.returncode == 0 and end in outcome.stdout
    compile_failed = getattr(module, "compile_failed", None)
    compiled = finished or not (compile_failed and compile_failed(outcome.returncode, outcome.stderr))
    report = Report(_results(exercise, language, q, outcome, end), seconds=outcome.duration, runs=1)
    if not compiled or (not test_results(outcome.stdout) and not finished and outcome.status != "timeout"):
        report.load_error = _load_error(module, q, code, completion, outcome.stderr, compiled)
        for t in report.tests:
            t.status, t.error = "error", "not run: see above"
    elif not finished and report.passed:  # every test line says PASSED, but the run did not end properly
        report.load_error = {"status": "error", "error": "the program did not run to its end",
                             "line": None, "line_text": "", "output": _last_line(outcome.stderr)}
    return report


def _results(exercise: Exercise, language: str, q: Question, outcome, end: str) -> list[TestResult]:
    """Each test's status from the driver's lines, with what the learner's code printed during it."""
    cases = calls(exercise, language)
    results: dict[int, TestResult] = {}
    for index, result, printed in _driver_lines(outcome.stdout, end, language):
        if index >= len(cases):
            continue
        call, expected = cases[index]
        t = TestResult(index, call, "passed", expected=expected, output=printed[-2000:])
        if result == "FAILED":
            t.status, t.message = "failed", "returned another value (the driver does not show it: print it to see it)"
        elif result != "PASSED":
            t.status, t.error = "error", f"raised {result}"
        results[index] = t  # (a later line for the same test wins, as in BabelCode's verdict)
    out = []
    stopped = "timeout" if outcome.status == "timeout" else "error"
    for i, (call, expected) in enumerate(cases):
        if i in results:
            out.append(results[i])
        elif stopped:
            error = (f"timed out: still running after {outcome.duration:.1f} s" if stopped == "timeout"
                     else f"the program stopped: {_last_line(outcome.stderr) or f'exit status {outcome.returncode}'}")
            out.append(TestResult(i, call, stopped, expected=expected, error=error))
            stopped = ""
        else:
            out.append(TestResult(i, call, "not run", expected=expected, error="not run: the program stopped before"))
    return out


# C++'s driver writes `cout << "TEST-i..." << driver(...)`: the label goes out before the test runs, so what the
# learner's code prints lands between the label and the result, which is one of these.
CPP_RESULTS = ("PASSED", "FAILED", "exception", "UNKNOWN_ERROR")


def _driver_lines(stdout: str, end: str, language: str) -> list[tuple[int, str, str]]:
    """(test index, result, what was printed during the test) per `TEST-i...RESULT` line."""
    out, printed, pending = [], [], None
    for line in stdout.split("\n"):
        if pending is not None:  # C++: the result ends a later line
            token = next((r for r in CPP_RESULTS if line.endswith(r)), None)
            if token is None:
                printed.append(line)
                continue
            printed.append(line[:-len(token)])
            out.append((pending, token, "\n".join(printed).strip("\n")))
            pending, printed = None, []
            continue
        found = test_results(line)
        if not found:
            if line.strip() not in (end, ""):
                printed.append(line)
            continue
        (index, result), = found.items()
        if language == "cpp" and result not in CPP_RESULTS:
            token = next((r for r in CPP_RESULTS if result.endswith(r)), None)
            if token is None:
                pending, printed = index, [result]
                continue
            printed.append(result[:-len(token)])
            result = token
        out.append((index, result, "\n".join(printed).strip("\n")))
        printed = []
    return out


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _load_error(module, q: Question, code: str, completion: str, stderr: str, compiled: bool) -> dict:
    """The compiler's (or the runtime's) first complaint, its line moved into the learner's code."""
    sentinel = f"@@LEARNER-{nonce()}@@"
    offset = module.program(q, "", sentinel, "END").split(sentinel)[0].count("\n")
    n_lines = max(1, completion.count("\n") + 1)
    last = max(1, code.rstrip().count("\n") + 1)
    # file:line, file:line:column (g++, javac, go, rustc, kotlinc, node), file(line,column) (mcs)
    location = re.compile(re.escape(module.SOURCE_FILE) + r"(?::|\()(\d+)(?:[:,](\d+)\)?)?")

    def learner_line(program_line: int) -> int | None:
        line = program_line - offset
        if 1 <= line <= n_lines:
            return line
        return last if n_lines < line <= n_lines + 3 else None  # the closing braces the driver put back

    def moved(match: re.Match) -> str:
        line, column = learner_line(int(match.group(1))), f", column {match.group(2)}" if match.group(2) else ""
        return f"your code, line {line}{column}" if line else f"the test driver, line {match.group(1)}{column}"

    def gutter(match: re.Match) -> str:  # gcc's and rustc's `  6 | source` excerpts
        line = learner_line(int(match.group(2)))
        return f"{match.group(1)}{line if line else match.group(2)}{match.group(3)}"

    stderr = re.sub(r"(?m)^Picked up \w*JAVA\w*OPTIONS:.*\n?", "", stderr)  # the JVM's note on its flags
    text = re.sub(r"(?:\S*/)?" + location.pattern, moved, stderr.strip())
    text = re.sub(r"(?m)^(\s*)(\d+)( \|)", gutter, text)
    first = next((m for m in location.finditer(stderr) if learner_line(int(m.group(1)))), None)
    line = learner_line(int(first.group(1))) if first else None
    lines = code.splitlines()
    message = _message(stderr, first) or _last_line(stderr) or "the program did not run"
    return {"status": "compile error" if not compiled else "error", "error": message, "line": line,
            "line_text": lines[line - 1].strip() if line and line <= len(lines) else "", "output": text[-4000:]}


def _message(stderr: str, first: re.Match | None) -> str:
    """The error message next to the first location: on its line (g++, javac, go, mcs, kotlinc), the line
    above it (rustc's `-->`), or the runtime's `...Error:` line (node)."""
    if first is None:
        return ""
    start = stderr.rfind("\n", 0, first.start()) + 1
    end = stderr.find("\n", first.end())
    rest = re.sub(r"^[\d:,)]*\s*", "", stderr[first.end():end if end >= 0 else None]).strip()
    if rest:
        return rest[:300]
    above = [line.strip() for line in stderr[:start].splitlines() if line.strip()]
    if above and above[-1].startswith(("error", "warning")):
        return above[-1][:300]
    errors = [line.strip() for line in stderr.splitlines() if re.match(r"\s*\w*Error\b", line)]
    return errors[0][:300] if errors else ""


def grade_in(exercise: Exercise, language: str, code: str, *, budget: float = BUDGET) -> Report:
    """Python's own grading (grading.grade) or BabelCode's driver, by language."""
    if language == "python":
        return grade(exercise, code, budget=budget)
    question(exercise, language)  # LanguageError where it is not offered
    return grade_babel(exercise, language, code)
