"""`codegemma data build`: source repositories -> filtered, packed, FIM-transformed token shards.

Stage 1 (plan, global): read every file, record why any is dropped (encoding, size, binary, vendored,
generated, minified, language), exact and near duplicates, benchmark contamination. Saved as plan.json.
Stage 2 (shards, parallel): each group of repositories independently becomes one shard: redaction,
repository packing, FIM per file, documents split at file boundaries to fit the sequence length,
tokens. A shard is a pure function of its group, the plan and the seed, which is what lets it run
as a task of any executor (local processes here; see README for datatrove and Ray) and lets an
interrupted build resume by skipping finished shards.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CodeGemmaError
from ..tokenizer import FILE_SEPARATOR, Tokenizer
from .filters import Decontaminator, MinHashLSH, benchmark_texts, content_hash, drop_reason, redact
from .fim import FimSettings, fim_tokens, render, rng_for, split
from .languages import language_of
from .packing import order_repository
from .shards import finished_shards, write_index, write_shard

PLAN, STATS = "plan.json", "stats.json"


class DataInputError(CodeGemmaError, ValueError):
    """An input that cannot be read as repositories or rows."""


@dataclass(frozen=True)
class BuildSettings:
    seq_len: int = 8192
    fim: FimSettings = field(default_factory=FimSettings)
    seed: int = 0
    workers: int = 1
    keep_text: bool = False
    repos_per_shard: int = 16
    decontaminate: bool = True
    data_dir: str | None = None  # where benchmark files are, for decontamination


# Stage 0: reading inputs. A repository is (name, {path: bytes | error string}).
Repo = tuple[str, dict[str, bytes | str]]


def _read_tree(root: Path) -> dict[str, bytes | str]:
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


def _rows(path: Path) -> Iterator[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        yield from pq.read_table(path, columns=["repo", "path", "content"]).to_pylist()
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


def read_inputs(inputs: list[str | Path]) -> list[Repo]:
    """Folders of repositories, single repository folders, and JSONL/Parquet rows, merged by repository name."""
    repos: dict[str, dict[str, bytes | str]] = defaultdict(dict)
    for item in map(Path, inputs):
        if item.is_dir():
            if _is_repository(item):
                repos[item.name].update(_read_tree(item))
            else:
                for sub in sorted(p for p in item.iterdir() if p.is_dir() and not p.is_symlink()):
                    repos[sub.name].update(_read_tree(sub))
        elif item.is_file() and item.name.endswith((".jsonl", ".jsonl.gz", ".json", ".parquet")):
            for row in _rows(item):
                content = row["content"]
                data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
                repos[row["repo"]][row["path"]] = data
        else:
            raise DataInputError(f"{item}: not a folder, .jsonl(.gz) or .parquet file")
    return sorted((name, dict(sorted(files.items()))) for name, files in repos.items())


# Stage 1: the plan.
def make_plan(repos: list[Repo], settings: BuildSettings) -> dict:
    """Which files survive, and why each other one does not. Sequential: deduplication is global."""
    dropped: Counter[str] = Counter()
    keep: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    lsh = MinHashLSH()
    decon = Decontaminator(benchmark_texts(settings.data_dir)) if settings.decontaminate else None
    files_in = bytes_in = 0
    for name, files in repos:
        kept = []
        for path, data in files.items():
            files_in += 1
            if isinstance(data, str):
                dropped[data] += 1
                continue
            bytes_in += len(data)
            reason = drop_reason(path, data) or (None if language_of(path) else "unsupported-language")
            text = data.decode("utf-8") if reason is None else ""
            if reason is None:
                digest = content_hash(text)
                if digest in seen:
                    reason = "exact-duplicate"
                elif lsh.add_or_match(text) is not None:
                    reason = "near-duplicate"
                elif decon is not None and decon.match(text):
                    reason = "contaminated"
                seen.setdefault(digest, f"{name}/{path}")
            if reason:
                dropped[reason] += 1
            else:
                kept.append(path)
        keep[name] = kept
    return {"repositories": len(repos), "files_in": files_in, "bytes_in": bytes_in, "dropped": dict(dropped),
            "keep": keep}


# Stage 2: one shard.
@functools.lru_cache(maxsize=4)
def _tokenizer(spec: str) -> Tokenizer:
    """One tokenizer per spec and process (worker processes load their own)."""
    from ..sources import open_tokenizer
    return open_tokenizer(spec)


def build_shard(task: tuple[str, list[Repo], dict, BuildSettings, str, str]) -> str:
    name, repos, keep, settings, tokenizer_spec, out = task
    tok = _tokenizer(tokenizer_spec)
    sep = tok.token_id(FILE_SEPARATOR)
    stats: Counter[str] = Counter()
    documents: list[list[int]] = []
    texts: list[dict] = []
    for repo, files in repos:
        kept = {p: files[p].decode("utf-8") for p in keep.get(repo, [])}
        if not kept:
            continue
        redacted = {}
        for path, text in kept.items():
            redacted[path], counts = redact(text)
            stats.update({f"redacted_{k}": v for k, v in counts.items()})
        current: list[int] = []
        listing: list[dict] = []
        pieces: list[str] = []
        for path in order_repository(redacted):
            s = split(redacted[path], path, rng_for(settings.seed, repo, path), settings.fim)
            stats[f"fim_{s.mode}"] += 1
            ids = tok.encode(f"{path}\n", bos=False) + fim_tokens(tok, s, settings.fim.spm_layout)
            ids += [sep] if sep is not None else tok.encode("\n", bos=False)
            if current and len(current) + len(ids) > settings.seq_len:
                documents.append(current)
                texts.append({"repo": repo, "files": listing, "text": "".join(pieces)})
                current, listing, pieces = [], [], []
            current += ids
            listing.append({"path": path, "fim": s.mode})
            pieces.append(f"{path}\n{render(s, settings.fim.spm_layout)}{FILE_SEPARATOR}")
        documents.append(current)
        texts.append({"repo": repo, "files": listing, "text": "".join(pieces)})
        stats["repositories"] += 1
    stats["files"] = sum(len(t["files"]) for t in texts)
    if settings.keep_text:
        text_dir = Path(out) / "text"
        text_dir.mkdir(exist_ok=True)
        tmp = text_dir / f".{name}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
        os.replace(tmp, text_dir / f"{name}.jsonl")
    write_shard(Path(out), name, documents, {"stats": dict(stats)})
    return name


def build(inputs: list[str | Path], out: str | Path, tokenizer_spec: str,
          settings: BuildSettings = BuildSettings()) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    repos = read_inputs(inputs)
    timings["read"] = time.perf_counter() - t
    t = time.perf_counter()
    identity = {"inputs": [str(Path(i).resolve()) for i in inputs], "settings": asdict(settings),
                "tokenizer": tokenizer_spec}
    plan_path = out / PLAN
    plan = json.loads(plan_path.read_text(encoding="utf-8")) if plan_path.exists() else None
    if plan is None or plan.get("identity") != identity:
        if plan is not None and finished_shards(out):
            raise DataInputError(f"{out} holds a build with other inputs or settings; use another --out")
        plan = {"identity": identity, **make_plan(repos, settings)}
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
    timings["plan"] = time.perf_counter() - t
    t = time.perf_counter()
    groups = [repos[i:i + settings.repos_per_shard] for i in range(0, len(repos), settings.repos_per_shard)]
    done = finished_shards(out)
    tasks = [(f"shard-{i:05d}", g, plan["keep"], settings, tokenizer_spec, str(out))
             for i, g in enumerate(groups) if f"shard-{i:05d}" not in done]
    if settings.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(settings.workers) as pool:
            list(pool.map(build_shard, tasks))
    else:
        for task in tasks:
            build_shard(task)
    timings["shards"] = time.perf_counter() - t
    tok = _tokenizer(tokenizer_spec)
    index = write_index(out, tok.vocab_size, settings.seq_len)
    return write_stats(out, plan, index, timings, resumed=len(groups) - len(tasks))


def write_stats(out: Path, plan: dict, index: dict, timings: dict, resumed: int) -> dict:
    merged: Counter[str] = Counter()
    for shard in finished_shards(out).values():
        merged.update(shard["stats"])
    kept_files = sum(len(v) for v in plan["keep"].values())
    fim_total = sum(merged[f"fim_{m}"] for m in ("psm", "spm", "none")) or 1
    stats = {
        "input": {"repositories": plan["repositories"], "files": plan["files_in"], "bytes": plan["bytes_in"]},
        "stages": {"filter": {"in": plan["files_in"], "out": kept_files, "dropped": plan["dropped"]},
                   "pack": {"in": kept_files, "out": merged["files"]},
                   "tokenize": {"documents": sum(s["documents"] for s in index["shards"]),
                                "tokens": sum(s["tokens"] for s in index["shards"])}},
        "redactions": {k.removeprefix("redacted_"): v for k, v in merged.items() if k.startswith("redacted_")},
        "fim": {"psm": merged["fim_psm"] / fim_total, "spm": merged["fim_spm"] / fim_total,
                "none": merged["fim_none"] / fim_total, "files": fim_total},
        "shards": len(index["shards"]), "shards_resumed": resumed, "seconds": timings,
    }
    (out / STATS).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats
