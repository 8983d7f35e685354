"""Source languages: extensions, tree-sitter grammars, import extraction and test-file naming."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

EXTENSIONS = {
    ".py": "python", ".java": "java", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp", ".kt": "kotlin",
    ".kts": "kotlin", ".rs": "rust",
}
IMPORT_LINES = 64  # imports are looked for in the top lines of a file (facts document: "top N lines")


def language_of(path: str) -> str | None:
    for ext, lang in EXTENSIONS.items():
        if path.endswith(ext):
            return lang
    return None


@functools.cache
def parser(lang: str):
    """A tree-sitter parser from the per-language grammar packages (no downloads at run time)."""
    import tree_sitter as ts

    modules = {"python": "tree_sitter_python", "java": "tree_sitter_java", "javascript": "tree_sitter_javascript",
               "typescript": "tree_sitter_typescript", "go": "tree_sitter_go", "c": "tree_sitter_c",
               "cpp": "tree_sitter_cpp", "csharp": "tree_sitter_c_sharp", "kotlin": "tree_sitter_kotlin",
               "rust": "tree_sitter_rust"}
    module = __import__(modules[lang])
    grammar = module.language_typescript() if lang == "typescript" else module.language()
    return ts.Parser(ts.Language(grammar))


# Node types that hold an import, per language, and how to read the imported name from its text.
IMPORT_NODES = {
    "python": ("import_statement", "import_from_statement"),
    "java": ("import_declaration",),
    "kotlin": ("import_header", "import"),
    "javascript": ("import_statement", "export_statement", "call_expression"),
    "typescript": ("import_statement", "export_statement", "call_expression"),
    "go": ("import_spec",),
    "c": ("preproc_include",),
    "cpp": ("preproc_include",),
    "csharp": ("using_directive",),
    "rust": ("use_declaration", "mod_item"),
}


def imports(lang: str, source: str) -> list[str]:
    """Imported module names as path-like strings ("a/b/c"), from the top IMPORT_LINES lines."""
    head = "\n".join(source.splitlines()[:IMPORT_LINES]).encode("utf-8", errors="replace")
    tree = parser(lang).parse(head)
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in IMPORT_NODES[lang]:
            text = node.text.decode("utf-8", errors="replace")
            if lang == "python":
                found += _python_from_names(text)
            name = _import_name(lang, text)
            if name:
                found.append(name)
            if name or node.type != "export_statement":  # an export without a source may hold a require()
                continue
        stack.extend(reversed(node.children))
    return found


def _python_from_names(text: str) -> list[str]:
    """`from a.b import c, d as e` may import submodules a/b/c and a/b/d."""
    m = re.match(r"from\s+\.*([\w.]*)\s+import\s+\(?([\w\s,]+?)\)?\s*$", " ".join(text.split()))
    if not m:
        return []
    base = m.group(1).replace(".", "/")
    names = [n.split(" as ")[0].strip() for n in m.group(2).split(",") if n.strip() and n.strip() != "*"]
    return [f"{base}/{n}" if base else n for n in names]


def _import_name(lang: str, text: str) -> str | None:
    text = " ".join(text.split())
    if lang == "python":
        m = re.match(r"from\s+(\.*)([\w.]*)\s+import", text) or re.match(r"import\s+([\w.]+)", text)
        if not m:
            return None
        return m.group(2).replace(".", "/") if m.re.pattern.startswith("from") else m.group(1).replace(".", "/")
    if lang in ("javascript", "typescript"):
        if text.startswith(("require", "import(")) or "require(" in text[:9] or text.startswith("import"):
            m = re.search(r"""['"]([^'"]+)['"]""", text)
            if m and (text.startswith("import") or text.startswith("require")):
                return re.sub(r"^(\./|\.\./)+", "", m.group(1))
        return None
    if lang in ("java", "kotlin", "csharp"):
        m = re.match(r"(?:import|using)\s+(?:static\s+)?([\w.]+)", text)
        return m.group(1).replace(".", "/") if m else None
    if lang == "go":
        m = re.search(r'"([^"]+)"', text)
        return m.group(1) if m else None
    if lang in ("c", "cpp"):
        m = re.search(r'#\s*include\s*"([^"]+)"', text)
        return m.group(1) if m else None
    if lang == "rust":
        m = re.match(r"(?:pub\s+)?(?:use|mod)\s+(?:crate::|self::|super::)*([\w:]+)", text)
        return m.group(1).replace("::", "/") if m else None
    return None


_TEST_PATTERNS = [  # (regex over the file name, how to get the implementation's name)
    (re.compile(r"^test_(.+)\.py$"), r"\1.py"), (re.compile(r"^(.+)_test\.py$"), r"\1.py"),
    (re.compile(r"^(.+)_test\.go$"), r"\1.go"), (re.compile(r"^(.+)Tests?\.(java|kt|cs)$"), r"\1.\2"),
    (re.compile(r"^Test(.+)\.(java|kt|cs)$"), r"\1.\2"),
    (re.compile(r"^(.+)\.(spec|test)\.(js|ts|jsx|tsx|mjs)$"), r"\1.\3"),
    (re.compile(r"^(.+)_test\.(c|cc|cpp|rs)$"), r"\1.\2"), (re.compile(r"^test_(.+)\.(c|cc|cpp|rs)$"), r"\1.\2"),
]


def tested_file(name: str) -> str | None:
    """For a test file's name (test_foo.py, foo_test.go, FooTest.java, foo.spec.ts ...), the tested file's name."""
    for pattern, repl in _TEST_PATTERNS:
        if pattern.match(name):
            return pattern.sub(repl, name)
    return None


@dataclass(frozen=True)
class SyntaxPoints:
    """Character offsets where a syntax node starts, and line starts: natural places for a FIM split."""

    nodes: tuple[int, ...]
    lines: tuple[int, ...]


def syntax_points(lang: str | None, text: str) -> SyntaxPoints:
    lines = tuple(m.end() for m in re.finditer("\n", text) if m.end() < len(text))
    if lang is None:
        return SyntaxPoints((), lines)
    data = text.encode("utf-8")
    tree = parser(lang).parse(data)
    starts: set[int] = set()
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_named and node.start_byte > 0:
            starts.add(node.start_byte)
        stack.extend(node.children)
    # byte offsets -> character offsets
    char_of = _byte_to_char(data) if len(data) != len(text) else None
    nodes = sorted(int(char_of[b]) for b in starts if b < len(data)) if char_of is not None else sorted(starts)
    return SyntaxPoints(tuple(nodes), lines)


def _byte_to_char(data: bytes) -> np.ndarray:
    """The character index of every byte of UTF-8 data (a continuation byte belongs to its character)."""
    b = np.frombuffer(data, dtype=np.uint8)
    return np.cumsum((b & 0xC0) != 0x80, dtype=np.int64) - 1
