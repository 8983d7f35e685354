"""The pipeline's own datatrove steps: read repositories, filter files, decontaminate, redact, pack into shards.

A document is one source file: `text` is its content (UTF-8, or Latin-1 with metadata `utf8: false` so the
original bytes survive for the filters), `id` is `repo/path`, and metadata holds `repo`, `path`, `group`
(the shard it belongs to) and `error` (why it could not be read). Every step records what it drops as a
datatrove stat `dropped_<reason>`; the final stats add them up.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from typing import TextIO

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import _mersenne_prime as _MERSENNE_PRIME
from datatrove.utils.word_tokenizers import WordTokenizer

from ..tokenizer import FILE_SEPARATOR, Tokenizer
from .filters import MAX_BYTES, Decontaminator, benchmark_texts, drop_reason, redact
from .fim import FimSettings, fim_tokens, render, rng_for, split
from .imports import BUILD_FILES
from .inputs import Manifest, RowSpool, read_group
from .languages import language_of
from .packing import order_repository
from .shards import write_shard


def document_text(doc: Document) -> str:
    """The content exact deduplication hashes (a named function: executors pickle their steps)."""
    return doc.text


class CodeWords(WordTokenizer):
    """Words for MinHash shingles: runs of letters, digits and underscores (no language model)."""

    def word_tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text)

    def sent_tokenize(self, text: str) -> list[str]:
        return text.splitlines()

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"[^\n]+", text)]


class MinhashSignatures(MinhashDedupSignature):
    """datatrove's MinHash stage 1 with the permuted hashes computed in chunks of shingles: the same signature
    (a minimum over chunks is the minimum) with a bounded matrix, where datatrove's own builds shingles x 128
    uint64 at once (240 MB for a 1 MB file)."""

    chunk = 4096

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        a, b = self.parameters
        mins = np.full(a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        for i in range(0, len(shingles), self.chunk):
            phv = (shingles[i:i + self.chunk] * a + b) % _MERSENNE_PRIME
            if self.config.hash_config.precision == 32:
                phv = np.bitwise_and(phv, self.config.hash_config.max)
            mins = np.minimum(mins, phv.min(axis=0))
        return [x.tolist() for x in np.split(mins.astype(self.config.hash_config.np_dtype), self.config.num_buckets)]


# Intermediate documents between stages: one gzipped JSONL file per task, written under a temporary name.
@contextlib.contextmanager
def task_file(folder: str, rank: int) -> Iterator[TextIO]:
    """FOLDER/RANK.jsonl.gz, written under a temporary name and renamed once complete (a re-run replaces it)."""
    os.makedirs(folder, exist_ok=True)
    final = Path(folder) / f"{rank:05d}.jsonl.gz"
    tmp = final.with_name(f".{final.name}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
        yield f
    os.replace(tmp, final)


class WriteStage(PipelineStep):
    """Writes the documents it passes on to FOLDER/RANK.jsonl.gz (replaced whole when a task is re-run)."""

    type, name = "💽 - WRITER", "stage file"

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = str(folder)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with task_file(self.folder, rank) as f:
            for doc in data:
                f.write(json.dumps({"id": doc.id, "text": doc.text, "metadata": doc.metadata}) + "\n")
                self.stat_update("documents")
                yield doc


class ReadStage(PipelineStep):
    """Reads FOLDER/RANK.jsonl.gz, the documents task RANK of the previous stage wrote."""

    type, name = "📖 - READER", "stage file"

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = str(folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with gzip.open(Path(self.folder) / f"{rank:05d}.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                self.stat_update("documents")
                yield Document(text=row["text"], id=row["id"], metadata=row["metadata"])


class ReadRepositories(PipelineStep):
    """Every file of the task's repositories as a document, in manifest order (group, repository, path)."""

    type, name = "📖 - READER", "repositories"

    def __init__(self, manifest: str | Path) -> None:
        super().__init__()
        self.manifest = str(manifest)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        manifest = Manifest.load(self.manifest)
        block = manifest.block(rank, world_size)
        repos = [r for g in block for r in manifest.groups[g]]
        spool = RowSpool(manifest, repos) if any(not Path(s).is_dir() for r in repos
                                                 for s in manifest.sources[r]) else None
        try:
            for g in block:
                for repo, files in read_group(manifest, manifest.groups[g], spool):
                    for path, content in files.items():
                        self.stat_update("files")
                        yield file_document(repo, path, content, g)
                        if isinstance(content, bytes):
                            self.stat_update("bytes", value=len(content))
        finally:
            if spool is not None:
                spool.close()


def file_document(repo: str, path: str, content: bytes | str, group: int) -> Document:
    meta = {"repo": repo, "path": path, "group": group, "error": None, "utf8": True, "bytes": 0}
    if isinstance(content, str):
        return Document(text="", id=f"{repo}/{path}", metadata={**meta, "error": content})
    meta["bytes"] = len(content)
    if len(content) > MAX_BYTES:
        return Document(text="", id=f"{repo}/{path}", metadata={**meta, "error": "oversized"})
    try:
        return Document(text=content.decode("utf-8"), id=f"{repo}/{path}", metadata=meta)
    except UnicodeDecodeError:
        return Document(text=content.decode("latin-1"), id=f"{repo}/{path}", metadata={**meta, "utf8": False})


class FilterFiles(PipelineStep):
    """Drops files with a reason (empty, binary, vendored, generated, minified, language ...).

    Build files that resolve imports (go.mod, CMakeLists.txt, Makefile) are dropped from packing but kept
    aside in BUILD_FOLDER/RANK.jsonl.gz for the packing step of the same task.
    """

    type, name = "🔻 - FILTER", "files"

    def __init__(self, build_folder: str | Path) -> None:
        super().__init__()
        self.build_folder = str(build_folder)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with task_file(self.build_folder, rank) as side:
            for doc in data:
                meta = doc.metadata
                reason = meta["error"] or drop_reason(meta["path"], doc.text.encode("utf-8" if meta["utf8"]
                                                                                    else "latin-1"))
                reason = reason or (None if language_of(meta["path"]) else "unsupported-language")
                if reason is None:
                    yield doc
                    continue
                self.stat_update(f"dropped_{reason}")
                if posixpath.basename(meta["path"]) in BUILD_FILES and meta["utf8"] and not meta["error"]:
                    side.write(json.dumps({"repo": meta["repo"], "path": meta["path"], "text": doc.text}) + "\n")


@functools.cache
def _decontaminator(data_dir: str | None) -> Decontaminator:
    return Decontaminator(benchmark_texts(data_dir))


class Decontaminate(PipelineStep):
    """Drops files holding a benchmark prompt or solution (HumanEval, MBPP, infilling)."""

    type, name = "🔻 - FILTER", "decontaminate"

    def __init__(self, data_dir: str | None) -> None:
        super().__init__()
        self.data_dir = data_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        decon = _decontaminator(self.data_dir)
        for doc in data:
            if decon.match(doc.text):
                self.stat_update("dropped_contaminated")
                continue
            yield doc


class Redact(PipelineStep):
    """Emails, IP addresses and secrets become placeholders; counted as stats `redacted_<kind>`."""

    type, name = "✂️ - FORMAT", "redact"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            doc.text, counts = redact(doc.text)
            for kind, n in counts.items():
                self.stat_update(f"redacted_{kind}", value=n)
            yield doc


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str) -> Tokenizer:
    """One tokenizer per spec and process (worker processes load their own)."""
    from ..sources import open_tokenizer
    return open_tokenizer(spec)


class PackShards(PipelineStep):
    """Each shard group: repositories packed in dependency order, FIM per file, documents cut at file
    boundaries to fit `seq_len`, written as shard-GGGGG.bin/.json (and text/ with keep_text).

    A shard is a pure function of its group's surviving files, the seed and the settings; groups whose
    files were all dropped still get an (empty) shard, so the index lists every group.
    """

    type, name = "🔢 - TOKENIZER", "pack, FIM, shards"

    def __init__(self, out: str | Path, manifest: str | Path, build_folder: str | Path, tokenizer: str,
                 seq_len: int, fim: FimSettings, seed: int, keep_text: bool) -> None:
        super().__init__()
        self.out, self.manifest, self.build_folder = str(out), str(manifest), str(build_folder)
        self.tokenizer, self.seq_len, self.fim, self.seed, self.keep_text = tokenizer, seq_len, fim, seed, keep_text

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        block = Manifest.load(self.manifest).block(rank, world_size)
        build_files = _build_files(Path(self.build_folder) / f"{rank:05d}.jsonl.gz")
        pending = iter(block)  # groups are written as they stream past: one group in memory at a time
        for g, docs in groupby(data, key=lambda d: d.metadata["group"]):
            for empty in _until(pending, g):
                self.write_group(empty, [], build_files)
            repos = [(repo, {d.metadata["path"]: d.text for d in files})
                     for repo, files in groupby(docs, key=lambda d: d.metadata["repo"])]
            self.write_group(g, repos, build_files)
        for empty in pending:
            self.write_group(empty, [], build_files)
        return iter(())

    def write_group(self, group: int, repos: list[tuple[str, dict[str, str]]],
                    build_files: dict[str, dict[str, str]]) -> None:
        tok = load_tokenizer(self.tokenizer)
        sep = tok.token_id(FILE_SEPARATOR)
        stats: Counter[str] = Counter()
        documents: list[np.ndarray] = []  # uint32: a Python list of ints would take 36 bytes a token
        texts: list[dict] = []
        for repo, files in repos:
            current: list[int] = []
            listing: list[dict] = []
            pieces: list[str] = []
            for path in order_repository(files, build_files.get(repo)):
                s = split(files[path], path, rng_for(self.seed, repo, path), self.fim)
                stats[f"fim_{s.mode}"] += 1
                ids = tok.encode(f"{path}\n", bos=False) + fim_tokens(tok, s, self.fim.spm_layout)
                ids += [sep] if sep is not None else tok.encode("\n", bos=False)
                if current and len(current) + len(ids) > self.seq_len:
                    documents.append(np.array(current, dtype=np.uint32))
                    texts.append({"repo": repo, "files": listing, "text": "".join(pieces)})
                    current, listing, pieces = [], [], []
                current += ids
                listing.append({"path": path, "fim": s.mode})
                if self.keep_text:
                    pieces.append(f"{path}\n{render(s, self.fim.spm_layout)}{FILE_SEPARATOR}")
            documents.append(np.array(current, dtype=np.uint32))
            texts.append({"repo": repo, "files": listing, "text": "".join(pieces)})
            stats["repositories"] += 1
        stats["files"] = sum(len(t["files"]) for t in texts)
        self.stat_update("files", value=stats["files"])
        name = f"shard-{group:05d}"
        if self.keep_text:
            text_dir = Path(self.out) / "text"
            text_dir.mkdir(exist_ok=True)
            tmp = text_dir / f".{name}.jsonl.tmp"
            tmp.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
            os.replace(tmp, text_dir / f"{name}.jsonl")
        write_shard(Path(self.out), name, documents, {"stats": dict(stats)})


def _until(pending: Iterator[int], group: int) -> Iterator[int]:
    """The groups of `pending` before `group` (consumed), and `group` itself consumed silently."""
    for g in pending:
        if g == group:
            return
        yield g


def _build_files(path: Path) -> dict[str, dict[str, str]]:
    """repo -> {path: text} of the build files FilterFiles set aside for this task."""
    found: dict[str, dict[str, str]] = {}
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                found.setdefault(row["repo"], {})[row["path"]] = row["text"]
    return found
