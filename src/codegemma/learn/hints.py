"""Hints that nudge without giving the answer away, and explanations of code, from the chat model.

A hint is a spoiler when code in it passes the exercise's tests, alone or put after the learner's code (a
corrected function overrides theirs). Every hint is checked that way by running its code in the sandbox; a
spoiler is regenerated (sampled again) and, if every try spoils, withheld for a nudge built from the failing
test alone. What the model writes is shown as written otherwise: a weak model gives weak hints.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import CodeGemmaError
from .exercises import Exercise
from .grading import Report, TestResult
from .languages import LANGUAGES, grade_in

HINT_TOKENS = 160
EXPLAIN_TOKENS = 256
TRIES = 3
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.S)


class TooLong(CodeGemmaError, ValueError):
    """A prompt that leaves the model no room to answer within its context window."""


def room(model, messages: list[dict], wanted: int, least: int = 8) -> int:
    """`wanted` new tokens, or fewer where the model's context window ends sooner."""
    if not hasattr(model, "chat_ids") or not hasattr(model, "config"):
        return wanted
    left = model.config.max_position_embeddings - len(model.chat_ids(messages))
    if left < least:
        raise TooLong(f"the request is too long for {model.name}'s context window of "
                      f"{model.config.max_position_embeddings} tokens")
    return min(wanted, left)


@dataclass
class Hint:
    text: str
    withheld: bool  # every try was a spoiler: `text` is the model-free nudge
    tries: int
    spoilers: int  # how many tries were spoilers
    source: str = "model"  # model; nudge (every try a spoiler, or only an echo of the question)


def hint_messages(exercise: Exercise, code: str, failing: TestResult | None, language: str = "python") -> list[dict]:
    """The statement (in other languages than Python, its first paragraph: their code holds the rest as a doc
    comment), the code and the first failing test."""
    test = _describe(failing) if failing else "All tests pass; the learner asks how to improve the code."
    where = "" if language == "python" else f" in {LANGUAGES[language][0]}"
    statement = exercise.statement if language == "python" else exercise.statement.split("\n\n")[0]
    return [{"role": "user", "content": (
        f"You are a patient programming tutor. A student is working on this exercise{where}:\n\n"
        f"{statement}\n\nTheir code:\n```{language}\n{code}\n```\n\nThe first failing test:\n{test}\n\n"
        "Give ONE short hint (two or three sentences) that helps them find the problem themselves. "
        "Do not write the corrected code or the solution.")}]


def _describe(t: TestResult) -> str:
    lines = [f"`{t.code}`: {t.status}"]
    if t.expected is not None and t.actual is None and t.status == "failed":
        lines.append(f"expected {t.expected}")
    if t.expected is not None and t.actual is not None:
        lines.append(f"expected {t.expected}, got {t.actual}")
    if t.error:
        lines.append(t.error + (f" (line {t.line}: `{t.line_text}`)" if t.line else ""))
    return "; ".join(lines)


def code_blocks(text: str, language: str = "python") -> list[str]:
    """Code a hint contains: fenced blocks, or (Python) the whole text when it parses as Python defining
    something."""
    blocks = [b.strip("\n") for b in _FENCE.findall(text)]
    if not blocks and language == "python":
        try:
            tree = ast.parse(text)
            if any(isinstance(n, ast.FunctionDef | ast.Lambda | ast.Return) for n in ast.walk(tree)):
                blocks = [text]
        except SyntaxError:
            pass
    return [b for b in blocks if b.strip()]


def is_spoiler(exercise: Exercise, code: str, hint: str, language: str = "python") -> bool:
    """Whether code in `hint` passes every test of the exercise: alone or after the learner's code (Python and
    JavaScript, where a later definition replaces theirs), and in Java and C# also inside `class Solution`."""
    for block in code_blocks(hint, language):
        for candidate in _candidates(code, block, language):
            if grade_in(exercise, language, candidate, budget=8.0).passed:
                return True
    return False


def _candidates(code: str, block: str, language: str) -> list[str]:
    out = [block]
    if language in ("python", "javascript"):
        out.append(f"{code}\n\n{block}\n")
    if language in ("java", "csharp") and "class Solution" not in block:
        out.append(f"class Solution {{\n{block}\n}}\n")
    return out


def nudge(exercise: Exercise, failing: TestResult | None, load_error: dict | None = None) -> str:
    """A hint that needs no model: what the first failing test says, and where to look."""
    if load_error:
        where = f" at line {load_error['line']}" if load_error.get("line") else ""
        return f"Your code does not {'compile' if load_error['status'] == 'compile error' else 'run'}: " \
               f"{load_error['error']}{where}. Read that line and the one before it."
    if failing is None:
        return "Every test passes. Try another exercise, or make this solution shorter and clearer."
    if failing.status == "timeout":
        return f"`{failing.code}` never finishes: look for a loop whose condition never becomes false."
    if failing.error and failing.line:
        return f"`{failing.code}` stops with {failing.error} at line {failing.line}: what values reach that line?"
    if failing.expected is not None and failing.actual is not None:
        return (f"For `{failing.code}` your code returns {failing.actual} but {failing.expected} is expected. "
                "Work through that input by hand, step by step.")
    if failing.status == "failed" and failing.expected is not None:
        return (f"For `{failing.code}` {failing.expected} is expected and your code returns something else. "
                "Work through that input by hand, step by step.")
    return f"Look at `{failing.code}`: {failing.error or 'it does not pass yet'}."


def hint(model, exercise: Exercise, code: str, report: Report | None = None, *, seed: int = 0,
         language: str = "python") -> Hint:
    """A hint from `model` (anything with `.chat(messages, **options)`), checked against the spoiler filter."""
    report = report or grade_in(exercise, language, code)
    failing = report.first_failure()
    messages = hint_messages(exercise, code, failing, language)
    spoilers = 0
    try:
        tokens = room(model, messages, HINT_TOKENS)
    except TooLong:
        return Hint(nudge(exercise, failing, report.load_error), False, 0, 0, "nudge")
    for attempt in range(TRIES):
        options = {"max_tokens": tokens, "temperature": 0.0 if attempt == 0 else 0.8, "seed": seed + attempt}
        text = "".join(tidy(model.stream_chat(messages, **options), messages[-1]["content"])).strip()
        if is_spoiler(exercise, code, text, language):
            spoilers += 1
            continue
        if not text:  # nothing but the question repeated back: a pretrained model's answer to a chat
            return Hint(nudge(exercise, failing, report.load_error), False, attempt + 1, spoilers, "nudge")
        return Hint(text, False, attempt + 1, spoilers)
    return Hint(nudge(exercise, failing, report.load_error), True, TRIES, spoilers, "nudge")


def tidy(chunks: Iterator[str], prompt: str, *, shortest: int = 16, longest: int = 400) -> Iterator[str]:
    """The model's text without an echo of the prompt at its start, stopped once it loops (the same passage
    three times in a row), as small models do."""
    text, shown, echo = "", 0, True
    for chunk in chunks:
        text += chunk
        if echo:
            stripped = text.lstrip()
            if prompt.startswith(stripped):
                continue
            common = len(os.path.commonprefix([stripped, prompt]))
            text, echo = stripped[common:] if common >= shortest else text, False
        loop = _loop_start(text, shortest, longest)
        if loop is not None:
            if loop > shown:
                yield text[shown:loop]
            return
        yield text[shown:]
        shown = len(text)
    if echo and not prompt.startswith(text.lstrip()):
        yield text


def _loop_start(text: str, shortest: int, longest: int) -> int | None:
    """Where the first of three copies of a passage at the end of `text` begins, if there are three."""
    for period in range(shortest, min(longest, len(text) // 3) + 1):
        tail = text[-period:]
        if text[-2 * period:-period] == tail and text[-3 * period:-2 * period] == tail:
            return len(text) - 2 * period  # keep one copy
    return None


def explain_messages(code: str, language: str = "python") -> list[dict]:
    return [{"role": "user", "content": (
        f"Explain what this {language} code does, step by step, for a beginner:\n\n```{language}\n{code}\n```")}]


def stream_explanation(model, code: str, language: str = "python", max_tokens: int = EXPLAIN_TOKENS,
                       **options) -> Iterator[str]:
    messages = explain_messages(code, language)
    tokens = room(model, messages, max_tokens)  # raises TooLong now, not once streaming has begun
    return tidy(model.stream_chat(messages, max_tokens=tokens, **options), messages[-1]["content"])
