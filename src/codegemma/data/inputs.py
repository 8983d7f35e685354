"""Inputs of `codegemma data build`: which repositories there are (the manifest) and reading one group of them.

A repository is a folder (a git checkout or plain files) or the rows of JSONL/Parquet files that share a
`repo` name. The manifest lists repositories by name and source, sorted, in groups of `repos_per_shard`;
task `rank` of `tasks` owns a contiguous block of groups. Reading a folder holds one repository in
memory; rows are spooled per task into SQLite and read back one repository at a time.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CodeGemmaError

ROW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")

# A repository: (name, {path: bytes | the reason it could not be read}).
Repo = tuple[str, dict[str, bytes | str]]


class DataInputError(CodeGemmaError, ValueError):
    """An input that cannot be read as repositories or rows."""


@dataclass(frozen=True)
class Manifest:
    """The repositories of a build: groups[g] is shard g's sorted repository names; sources[name] their inputs."""

    groups: list[list[str]]
    sources: dict[str, list[str]]

    def block(self, rank: int, tasks: int) -> range:
        """The shard groups task `rank` of `tasks` owns (contiguous, so a task reads few row files)."""
        n = len(self.groups)
        return range(rank * n // tasks, (rank + 1) * n // tasks)

    def save(self, path: Path, identity: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": identity, "groups": self.groups, "sources": self.sources}),
                       encoding="utf-8")
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | Path) -> Manifest:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Manifest(data["groups"], data["sources"])


def make_manifest(inputs: list[str | Path], repos_per_shard: int) -> Manifest:
    """Lists the repositories of folders of repositories, repository folders and row files (names only)."""
    sources: dict[str, list[str]] = defaultdict(list)
    for item in map(Path, inputs):
        if item.is_dir():
            folders = [item] if _is_repository(item) else sorted(
                p for p in item.iterdir() if p.is_dir() and not p.is_symlink())
            for folder in folders:
                sources[folder.name].append(str(folder))
        elif item.is_file() and item.name.endswith(ROW_SUFFIXES):
            for name in sorted({row["repo"] for row in _rows(item, columns=("repo",))}):
                sources[name].append(str(item))
        else:
            raise DataInputError(f"{item}: not a folder, .jsonl(.gz) or .parquet file")
    names = sorted(sources)
    groups = [names[i:i + repos_per_shard] for i in range(0, len(names), repos_per_shard)]
    return Manifest(groups, {n: sources[n] for n in names})


def read_group(manifest: Manifest, repos: list[str], spool: RowSpool | None) -> Iterator[Repo]:
    """The repositories of one group, in order, each with its files sorted by path."""
    for name in repos:
        files: dict[str, bytes | str] = {}
        for source in manifest.sources[name]:
            if Path(source).is_dir():
                files.update(read_tree(Path(source)))
            elif spool is not None:
                files.update(spool.files(name))
        yield name, dict(sorted(files.items()))


def read_tree(root: Path) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {}
    for folder, dirs, names in os.walk(root, followlinks=False, onerror=None):
        for d in dirs:  # os.walk does not follow them (no loops), but they are recorded, not lost
            if (Path(folder) / d).is_symlink():
                files[(Path(folder) / d).relative_to(root).as_posix()] = "symlink"
        dirs[:] = sorted(d for d in dirs if d != ".git" and not (Path(folder) / d).is_symlink())
        for name in sorted(names):
            full = Path(folder) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                files[rel] = "symlink"
                continue
            try:
                files[rel] = full.read_bytes()
            except OSError:
                files[rel] = "unreadable"
    return files


def _is_repository(folder: Path) -> bool:
    return (folder / ".git").exists() or any(p.is_file() for p in folder.iterdir())


def _rows(path: Path, columns: tuple[str, ...] = ("repo", "path", "content")) -> Iterator[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(path).iter_batches(columns=list(columns), batch_size=1024):
            yield from batch.to_pylist()
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    yield {"repo": str(row["repo"]), "path": str(row["path"]), "content": row["content"]}
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataInputError(f"{path}:{n}: expected JSON with repo, path and content ({exc})") from exc


class RowSpool:
    """The rows of a task's repositories, streamed once from their row files into SQLite (so memory stays flat)."""

    def __init__(self, manifest: Manifest, repos: list[str]) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="codegemma-rows-")
        self.db = sqlite3.connect(Path(self._dir.name) / "rows.sqlite")
        self.db.execute("CREATE TABLE rows (repo TEXT, path TEXT, content BLOB)")
        wanted = set(repos)
        row_files = sorted({s for r in repos for s in manifest.sources[r] if not Path(s).is_dir()})
        for source in row_files:
            batch = ((row["repo"], row["path"], _as_bytes(row["content"])) for row in _rows(Path(source))
                     if row["repo"] in wanted)
            self.db.executemany("INSERT INTO rows VALUES (?, ?, ?)", batch)
        self.db.execute("CREATE INDEX by_repo ON rows (repo, path)")

    def files(self, repo: str) -> dict[str, bytes]:
        return dict(self.db.execute("SELECT path, content FROM rows WHERE repo = ? ORDER BY path, rowid", (repo,)))

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()


def _as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)
