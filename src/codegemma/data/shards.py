"""Token shards: uint32 arrays on disk with a JSON index, and a reader of fixed-length training sequences."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import CodeGemmaError

INDEX = "index.json"


class ShardError(CodeGemmaError, ValueError):
    """A shard folder that cannot be read as training data."""


def write_shard(folder: Path, name: str, documents: Sequence[Sequence[int] | np.ndarray], meta: dict) -> None:
    """Writes NAME.bin (all documents' tokens, uint32) and NAME.json (document offsets and stats), atomically:
    the .json appears last, so a shard without one is unfinished (a re-run task writes it again)."""
    tokens = (np.concatenate([np.asarray(d, dtype=np.uint32) for d in documents]) if documents
              else np.zeros(0, np.uint32))
    offsets = np.cumsum([0] + [len(d) for d in documents]).tolist()
    tmp_bin = folder / f".{name}.bin.tmp"
    tokens.tofile(tmp_bin)
    os.replace(tmp_bin, folder / f"{name}.bin")
    tmp_json = folder / f".{name}.json.tmp"
    tmp_json.write_text(json.dumps({"name": name, "tokens": int(tokens.size), "offsets": offsets, **meta}),
                        encoding="utf-8")
    os.replace(tmp_json, folder / f"{name}.json")


def finished_shards(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("shard-*.json"))}


def write_index(folder: Path, vocab_size: int, seq_len: int) -> dict:
    shards = finished_shards(folder)
    index = {"dtype": "uint32", "vocab_size": vocab_size, "seq_len": seq_len,
             "shards": [{"name": n, "tokens": s["tokens"], "documents": len(s["offsets"]) - 1}
                        for n, s in shards.items()]}
    (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index


class TokenShards:
    """Memory-mapped shards; `sequences(n)` yields arrays of n tokens cut from the concatenated stream."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise ShardError(f"{self.folder}: no {INDEX} (not a `codegemma data build` output)")
        try:
            self.index = json.loads(path.read_text(encoding="utf-8"))
            self.arrays = [np.memmap(self.folder / f"{s['name']}.bin", dtype=np.uint32, mode="r", shape=(s["tokens"],))
                           if s["tokens"] else np.zeros(0, np.uint32) for s in self.index["shards"]]
        except (OSError, ValueError, KeyError) as exc:
            raise ShardError(f"{self.folder}: unreadable shards ({exc})") from exc
        self.vocab_size = int(self.index["vocab_size"])

    @property
    def tokens(self) -> int:
        return sum(a.size for a in self.arrays)

    def stream(self) -> TokenStream:
        return TokenStream(self.arrays)

    def sequences(self, seq_len: int, start: int = 0) -> Iterator[np.ndarray]:
        """Consecutive windows of seq_len tokens over all shards in order, from token `start` (a trainer's
        data position); the incomplete tail is dropped."""
        stream = self.stream()
        for i in range(start, stream.size - seq_len + 1, seq_len):
            yield stream.window(i, seq_len)


class TokenStream:
    """Several shards' tokens as one sequence, read window by window: never concatenated in memory."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = [a for a in arrays if a.size]
        self.offsets = np.cumsum([0] + [a.size for a in self.arrays])  # shard i starts at offsets[i]

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def max(self) -> int:
        return max((int(a.max()) for a in self.arrays), default=0)

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as a new uint32 array; a window may span shards."""
        if start < 0 or start + length > self.size:
            raise IndexError(f"window [{start}, {start + length}) outside {self.size} tokens")
        out = np.empty(length, np.uint32)
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        filled = 0
        while filled < length:
            a, offset = self.arrays[shard], start + filled - int(self.offsets[shard])
            take = min(length - filled, a.size - offset)
            out[filled:filled + take] = a[offset:offset + take]
            filled += take
            shard += 1
        return out
