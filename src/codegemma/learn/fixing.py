"""Syntax correction: locate errors with the language's own parser, take a correction only if it parses and is
small.

Python errors come from Python's compiler; the other languages from their tree-sitter grammar (ERROR and
MISSING nodes). Corrections come first from the model (it rewrites a window of lines around the error), then
from the parser itself (tree-sitter's MISSING tokens inserted, and a few classic Python repairs at the error
line). A correction is accepted only if the whole file then parses and the diff changes at most
`max_changed_lines` lines.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..errors import CodeGemmaError

# extension -> (language, grammar module, its language function)
LANGUAGES = {
    ".py": ("python", "tree_sitter_python", "language"), ".js": ("javascript", "tree_sitter_javascript", "language"),
    ".mjs": ("javascript", "tree_sitter_javascript", "language"),
    ".ts": ("typescript", "tree_sitter_typescript", "language_typescript"),
    ".java": ("java", "tree_sitter_java", "language"), ".go": ("go", "tree_sitter_go", "language"),
    ".c": ("c", "tree_sitter_c", "language"), ".h": ("c", "tree_sitter_c", "language"),
    ".cc": ("cpp", "tree_sitter_cpp", "language"), ".cpp": ("cpp", "tree_sitter_cpp", "language"),
    ".hpp": ("cpp", "tree_sitter_cpp", "language"), ".cs": ("c_sharp", "tree_sitter_c_sharp", "language"),
    ".rs": ("rust", "tree_sitter_rust", "language"), ".kt": ("kotlin", "tree_sitter_kotlin", "language"),
}
BY_NAME = {lang: (module, fn) for lang, module, fn in LANGUAGES.values()}
WINDOW = 4  # lines on each side of the error that the model rewrites
SPAN = 12  # an ERROR node of at most this many lines gets the one-line repairs on each of its lines
_FENCE = re.compile(r"```[a-zA-Z0-9_+#-]*\n(.*?)(?:```|\Z)", re.S)
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


class FixError(CodeGemmaError, ValueError):
    """A file whose language is unknown or whose grammar is not installed."""


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def to_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass
class Fix:
    language: str
    problems: list[SyntaxProblem]
    fixed: str | None = None  # the accepted correction
    diff: str = ""
    source: str = ""  # "model" or "parser"
    rejected: list[str] = field(default_factory=list)  # why proposals were turned down

    def to_dict(self) -> dict:
        return {"language": self.language, "problems": [p.to_dict() for p in self.problems], "fixed": self.fixed,
                "diff": self.diff, "source": self.source, "rejected": self.rejected}


def language_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in LANGUAGES:
        raise FixError(f"cannot tell the language of {Path(path).name}: known extensions are "
                       f"{', '.join(sorted(LANGUAGES))} (or pass --language)")
    return LANGUAGES[suffix][0]


@cache
def parser(language: str):
    """A tree-sitter parser for `language` from its grammar package."""
    from tree_sitter import Language, Parser

    if language not in BY_NAME:
        raise FixError(f"unknown language {language!r}; choose one of {', '.join(sorted(BY_NAME))}")
    module, fn = BY_NAME[language]
    try:
        grammar = getattr(importlib.import_module(module), fn)()
    except ImportError as exc:
        raise FixError(f"the {language} grammar is not installed (pip install {module.replace('_', '-')})") from exc
    return Parser(Language(grammar))


def problems(source: str, language: str) -> list[SyntaxProblem]:
    """Syntax errors, in file order: Python's compiler for Python (one error), tree-sitter otherwise."""
    if language == "python":
        try:
            compile(source, "<file>", "exec", flags=ast.PyCF_ONLY_AST)
            return []
        except SyntaxError as exc:
            return [SyntaxProblem(exc.lineno or 1, exc.offset or 1, exc.msg)]
    tree = parser(language).parse(source.encode("utf-8"))
    return [SyntaxProblem(n.start_point[0] + 1, n.start_point[1] + 1, _describe(n, source))
            for n in _broken(tree.root_node)]


def _broken(node) -> list:
    if node.is_missing or node.type == "ERROR":
        return [node]
    if not node.has_error:
        return []
    return [b for child in node.children for b in _broken(child)]


def _describe(node, source: str) -> str:
    if node.is_missing:
        return f"missing {node.type!r}"
    text = source.encode("utf-8")[node.start_byte:node.end_byte].decode("utf-8", "replace").strip()
    return f"unexpected {text[:40]!r}" if text else "syntax error"


def changed_lines(before: str, after: str) -> int:
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal")


def max_changed_lines(source: str) -> int:
    return max(3, len(source.splitlines()) // 10)


def unified_diff(before: str, after: str, name: str = "file") -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))


def fix(source: str, language: str, model=None, *, name: str = "file", tries: int = 1) -> Fix:
    """Locates the errors; proposals from `model` (anything with `.chat`) first, then the parser's own."""
    found = problems(source, language)
    result = Fix(language, found)
    if not found:
        return result
    proposals = [("model", p) for p in model_proposals(model, source, language, found[0], tries)] if model else []
    for kind, candidate in proposals + [("parser", p) for p in parser_repairs(source, language)]:
        reason = _judge(source, candidate, language)
        if reason is None:
            result.fixed, result.source = candidate, kind
            result.diff = unified_diff(source, candidate, name)
            return result
        if kind == "model":
            result.rejected.append(f"model proposal: {reason}")
    return result


def _judge(before: str, after: str, language: str) -> str | None:
    if after == before:
        return "changes nothing"
    left = problems(after, language)
    if left:
        return f"does not parse (line {left[0].line}: {left[0].message})"
    n, limit = changed_lines(before, after), max_changed_lines(before)
    return f"changes {n} lines, more than {limit}" if n > limit else None


def fix_messages(window: str, language: str, problem: SyntaxProblem, first_line: int) -> list[dict]:
    return [{"role": "user", "content": (
        f"These lines of a {language} file (starting at line {first_line}) have a syntax error at line "
        f"{problem.line}: {problem.message}.\n\n```{language}\n{window}\n```\n\n"
        "Reply with the same lines corrected, in one code block, changing as little as possible.")}]


def model_proposals(model, source: str, language: str, problem: SyntaxProblem, tries: int) -> list[str]:
    """The file with the window around the error replaced by the model's rewrite, one per try."""
    from .hints import TooLong, room

    lines = source.splitlines(keepends=True)
    lo, hi = max(0, problem.line - 1 - WINDOW), min(len(lines), problem.line + WINDOW)
    window = "".join(lines[lo:hi])
    messages = fix_messages(window.rstrip("\n"), language, problem, lo + 1)
    wanted = 32 + len(window) // 2  # about 1.5 times the window's tokens, at ~3 characters a token
    try:
        budget = room(model, messages, wanted)
    except TooLong:
        return []
    out = []
    for attempt in range(tries):
        reply = model.chat(messages, max_tokens=budget, temperature=0.0 if attempt == 0 else 0.7, seed=attempt)
        blocks = _FENCE.findall(reply)
        rewrite = (blocks[0] if blocks else reply).strip("\n")
        if rewrite:
            out.append("".join(lines[:lo]) + rewrite + "\n" + "".join(lines[hi:]))
    return out


def parser_repairs(source: str, language: str, rounds: int = 3) -> list[str]:
    """Corrections the parser suggests, greedily: up to `rounds` errors fixed one after the other; in each round
    the smallest edit that makes the file parse wins, else the first that gets further."""
    current = source
    for _ in range(rounds):
        found = problems(current, language)
        if not found:
            break
        candidates = [c for c in dict.fromkeys(_single_repairs(current, language, found[0])) if c != current]
        clean = [c for c in candidates if not problems(c, language)]
        if clean:
            return [min(clean, key=lambda c: changed_lines(source, c))]
        current = next((c for c in candidates if _fewer(c, current, language)), None)
        if current is None:
            return []
    return [current] if current != source and not problems(current, language) else []


def _fewer(candidate: str, current: str, language: str) -> bool:
    after, before = problems(candidate, language), problems(current, language)
    if language == "python":  # one error at a time: progress is the error moving down the file
        return (after[0].line, after[0].column) > (before[0].line, before[0].column)
    return len(after) < len(before)


def _single_repairs(source: str, language: str, problem: SyntaxProblem) -> list[str]:
    data = source.encode("utf-8")
    lines = source.splitlines(keepends=True)
    tree = parser(language).parse(data)
    out = [] if language == "python" else [_closer_line(lines, problem.line - 1, c) for c in "})"]
    index = min(problem.line, len(lines)) - 1
    for i in (index, index - 1, *_spanned_lines(tree.root_node)):
        if 0 <= i < len(lines):
            out += [_replace_line(lines, i, edit) for edit in _line_edits(lines[i], lines[i - 1] if i else "")]
    for node in _broken(tree.root_node):
        if node.is_missing:
            out.append((data[:node.start_byte] + node.type.encode() + data[node.start_byte:]).decode("utf-8"))
    for node in _broken(tree.root_node):
        if node.type == "ERROR" and node.end_byte - node.start_byte <= 20 and node.start_point[0] == node.end_point[0]:
            out.append((data[:node.start_byte] + data[node.end_byte:]).decode("utf-8", "replace"))
    return out


def _spanned_lines(root, most: int = SPAN) -> list[int]:
    """The lines (0-based) inside a tree-sitter ERROR node of a few lines: where the error starts is where the
    parser gave up on a construct (Rust: a function), and the slip may be any line of it."""
    spans = [range(n.start_point[0], n.end_point[0] + 1) for n in _broken(root) if n.type == "ERROR"]
    return [i for span in spans if 1 < len(span) <= most for i in span]


def _closer_line(lines: list[str], index: int, closer: str) -> str:
    """A line holding only `closer` after the last non-blank line before line `index` (a block left open)."""
    at = min(index, len(lines))
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    width = _indent(lines[at - 1]) if at else 0
    opener = next((line for line in reversed(lines[:at]) if line.strip() and _indent(line) < width), "")
    indent = opener[:_indent(opener)]
    return "".join(lines[:at]) + indent + closer + "\n" + "".join(lines[at:])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _replace_line(lines: list[str], i: int, new: str) -> str:
    return "".join(lines[:i]) + new + "".join(lines[i + 1:])


def _line_edits(line: str, previous: str) -> list[str]:
    """One-line repairs: a missing colon, semicolon or closing bracket or quote, a wrong indentation."""
    body, end = line.rstrip("\r\n"), line[len(line.rstrip("\r\n")):] or "\n"
    stripped = body.rstrip()
    edits = [stripped + ":" + end, stripped + ";" + end]
    opened = []
    for ch in stripped:
        if ch in _CLOSERS:
            opened.append(_CLOSERS[ch])
        elif ch in _CLOSERS.values() and opened and opened[-1] == ch:
            opened.pop()
    if opened:
        edits.append(stripped + "".join(reversed(opened)) + end)
        edits.append(stripped + "".join(reversed(opened)) + ":" + end)
    for quote in ("'", '"'):
        if stripped.count(quote) % 2:
            edits.append(stripped + quote + end)
            edits.append(stripped + quote + ")" + end)
    indent = len(previous) - len(previous.lstrip())
    edits.append(previous[:indent] + body.lstrip() + end)
    edits.append(previous[:indent] + "    " + body.lstrip() + end)
    return edits
