"""Repository context: a local index of a repository's code (SQLite FTS5, BM25 ranking), kept fresh by
modification time, and retrieval of the chunks most related to the code around the cursor, given to the
model as CodeGemma's multi-file context.

Chunks are cut at tree-sitter boundaries: top-level definitions, small neighbours merged and long ones
split, up to MAX_LINES lines. A query takes the names used near the cursor (identifiers of the last
lines before it and the first after it, most recent first) and the files the edited file imports
(resolved as the data pipeline's dependency graph resolves them): chunks of imported files come first,
then the rest by BM25, within a character budget, the most related placed nearest the code.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .data.languages import IMPORT_LINES, imports, language_of, parser
from .data.packing import resolve
from .errors import CodeGemmaError
from .prompts import ContextFile

MAX_LINES = 60  # lines a chunk holds at most
MIN_LINES = 3  # non-blank lines: a shorter piece joins the next
MAX_FILE = 512 << 10  # bytes: larger files (generated, data) are not indexed
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", "build", "dist", "target",
             ".tox", ".mypy_cache", ".pytest_cache", ".idea", ".vscode"}
NEAR_LINES = (40, 10)  # lines before and after the cursor whose names make the query
MAX_NAMES = 24  # names taken from around the cursor
QUERY_NAMES = 10  # of those, the ones queried: the nearest selective ones
COMMON = 400  # a name in more chunks than this is too common to rank by
BUDGET_CHARS = 3000  # context retrieved for one request, in characters (about 800 tokens)
KEYWORDS = set("""and as assert async await break case catch class const continue def default del do elif else
enum except export extends false final finally fn for from func function go if impl import in interface is
lambda let match mod new nil none not null or package pass private protected pub public raise return self
static struct super switch this throw true try type use var void while with yield int str bool float string""".split())


class IndexError_(CodeGemmaError):
    """A repository that cannot be indexed."""


@dataclass(frozen=True)
class Chunk:
    path: str
    start: int  # first line, 1-based
    end: int  # last line
    text: str


def chunks_of(path: str, text: str) -> list[Chunk]:
    """A file cut at top-level syntax nodes (line windows where no grammar applies)."""
    lines = text.splitlines(keepends=True)
    lang = language_of(path)
    bounds: list[int] = []  # 0-based first lines of top-level nodes
    if lang is not None:
        try:
            tree = parser(lang).parse(text.encode("utf-8"))
            bounds = sorted({child.start_point[0] for child in tree.root_node.children})
        except (ValueError, RuntimeError):
            bounds = []
    if not bounds or bounds[0] != 0:
        bounds = [0] + bounds
    pieces: list[tuple[int, int]] = []  # [start, end) line ranges, each within MAX_LINES
    for start, end in zip(bounds, bounds[1:] + [len(lines)]):
        for s in range(start, end, MAX_LINES):
            pieces.append((s, min(end, s + MAX_LINES)))
    merged: list[tuple[int, int]] = []
    for s, e in pieces:  # a piece of a few lines (imports, a comment, a constant) joins the next one
        small = merged and sum(bool(line.strip()) for line in lines[merged[-1][0]:merged[-1][1]]) < MIN_LINES
        if small and e - merged[-1][0] <= MAX_LINES:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return [Chunk(path, s + 1, e, "".join(lines[s:e])) for s, e in merged if "".join(lines[s:e]).strip()]


def names_near(prefix: str, suffix: str) -> list[str]:
    """Identifiers used around the cursor, the nearest first, without keywords and very short names."""
    before = prefix.splitlines()[-NEAR_LINES[0]:]
    after = suffix.splitlines()[:NEAR_LINES[1]]
    seen: dict[str, None] = {}
    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
    nearest = [n for line in reversed(before) for n in reversed(ident.findall(line))]  # back from the cursor
    nearest += [n for line in after for n in ident.findall(line)]  # then on from it
    for name in nearest:
        if name.lower() not in KEYWORDS:
            seen.setdefault(name, None)
    return list(seen)[:MAX_NAMES]


def default_db(repo: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:16]
    return cache / "codegemma" / "index" / f"{repo.resolve().name}-{key}.sqlite"


class RepoIndex:
    """The index of one repository in an SQLite file; safe to share between threads."""

    def __init__(self, repo: str | Path, db: str | Path | None = None) -> None:
        self.repo = Path(repo)
        if not self.repo.is_dir():
            raise IndexError_(f"{self.repo}: not a folder")
        self.db = Path(db) if db else default_db(self.repo)
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.db, check_same_thread=False)
        self._con.executescript("""
            PRAGMA journal_mode = WAL;
            PRAGMA mmap_size = 268435456;
            CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, mtime REAL, size INTEGER, imports TEXT);
            CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
                text, path UNINDEXED, start UNINDEXED, end UNINDEXED, tokenize = "unicode61 tokenchars '_'");
            CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5vocab(chunks, 'row');
        """)
        self._paths: list[str] | None = None
        self._counts: dict[str, int] = {}  # term -> chunks it occurs in, as of the last refresh
        self._imports_of: tuple[tuple | None, set[str]] = (None, set())  # (path, import lines) -> imported paths
        self.refreshed = 0.0

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def refresh(self) -> dict:
        """Re-reads files whose modification time or size changed, drops deleted ones. Returns counts."""
        started = time.perf_counter()
        current = dict(self._walk())
        with self._lock:
            known = {p: (m, s) for p, m, s in self._con.execute("SELECT path, mtime, size FROM files")}
            changed = [p for p, stat in current.items() if known.get(p) != stat]
            gone = [p for p in known if p not in current]
            with self._con:
                for path in gone + changed:
                    self._con.execute("DELETE FROM chunks WHERE path = ?", (path,))
                    self._con.execute("DELETE FROM files WHERE path = ?", (path,))
                for path in changed:
                    try:
                        text = (self.repo / path).read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError):
                        text = ""  # recorded, so it is not read again until it changes
                    lang = language_of(path)
                    names = imports(lang, text) if lang else []
                    self._con.execute("INSERT INTO files VALUES (?, ?, ?, ?)", (path, *current[path], "\n".join(names)))
                    self._con.executemany("INSERT INTO chunks (text, path, start, end) VALUES (?, ?, ?, ?)",
                                          [(c.text, c.path, c.start, c.end) for c in chunks_of(path, text)])
            self._paths, self._imports_of = None, (None, set())
            if changed or gone or not self.refreshed:  # every term's chunk count, read once off the request path
                self._counts = dict(self._con.execute("SELECT term, doc FROM chunk_terms"))
            self.refreshed = time.time()
        return {"files": len(current), "updated": len(changed), "removed": len(gone),
                "seconds": time.perf_counter() - started}

    def _walk(self):
        for root, dirs, files in os.walk(self.repo):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                full = Path(root) / name
                rel = full.relative_to(self.repo).as_posix()
                if language_of(rel) is None:
                    continue
                try:
                    st = full.stat()
                except OSError:
                    continue
                if st.st_size <= MAX_FILE:
                    yield rel, (st.st_mtime, st.st_size)

    def _imported(self, path: str | None, code: str) -> set[str]:
        """Repository paths the edited file imports (from its code as the editor has it now)."""
        lang = language_of(path or "")
        if lang is None:
            return set()
        if self._paths is None:
            self._paths = [p for (p,) in self._con.execute("SELECT path FROM files")]
            self._by_stem = defaultdict(list)
            for p in self._paths:
                stem = posixpath.splitext(posixpath.basename(p))[0]
                self._by_stem[stem].append(p)
                if stem in ("__init__", "mod", "index"):
                    self._by_stem[posixpath.basename(posixpath.dirname(p))].append(p)
        head = "\n".join(code.splitlines()[:IMPORT_LINES])
        if self._imports_of[0] != (path, head):  # the import lines rarely change between keystrokes
            found = {resolve(name, self._paths, self._by_stem) for name in imports(lang, head)}
            self._imports_of = ((path, head), {p for p in found if p and p != path})
        return self._imports_of[1]

    def _selective(self, names: list[str]) -> list[str]:
        """The names worth a query: found in the index, and in at most COMMON of the chunks (a name in
        every other chunk says little and would make BM25 score half the index), nearest first."""
        return [n for n in names if 0 < self._counts.get(n.lower(), 0) <= COMMON][:QUERY_NAMES]

    def related(self, prefix: str, suffix: str, path: str | None = None,
                budget: int = BUDGET_CHARS) -> tuple[ContextFile, ...]:
        """Chunks most related to the code around the cursor, least related first (for build_fim, which
        places the last nearest the code and drops the first when over its budget)."""
        names = names_near(prefix, suffix)
        if not names:
            return ()
        with self._lock:
            names = self._selective(names)
            if not names:
                return ()
            query = " OR ".join(f'"{n}"' for n in names)
            imported = self._imported(path, prefix[:20000] + suffix[:2000])
            rows = self._con.execute(
                "SELECT path, start, end, text, rank FROM chunks WHERE chunks MATCH ? "
                "ORDER BY rank LIMIT 40", (query,)).fetchall()  # rank: FTS5's BM25, sorted by FTS5 itself
        rows = [r for r in rows if r[0] != path]
        rows.sort(key=lambda r: (r[0] not in imported, r[4]))  # imported files first, then BM25 (lower is better)
        picked, used = [], 0
        for p, start, end, text, _ in rows:
            if used + len(text) > budget:
                continue
            picked.append(ContextFile(p, text))
            used += len(text)
        return tuple(reversed(picked))


_OPEN: dict[tuple[str, str], RepoIndex] = {}
_OPEN_LOCK = threading.Lock()


def open_index(repo: str | Path, db: str | Path | None = None, max_age: float = 10.0) -> RepoIndex:
    """The index of `repo` for this process, refreshed when older than max_age seconds."""
    key = (str(Path(repo).resolve()), str(db or ""))
    with _OPEN_LOCK:
        index = _OPEN.get(key)
        if index is None:
            index = _OPEN[key] = RepoIndex(repo, db)
    if time.time() - index.refreshed > max_age:
        index.refresh()
    return index
