"""KV snapshots of earlier prompts kept in RAM, so that switching back to a file does not prefill it again.

The engine's live cache holds one prompt. When a request moves to another prompt, the live one is copied
here first; a later request that shares a longer prefix with a snapshot than with the live cache gets
that snapshot copied back into the cache slots. Snapshots are dropped least recently used first past a
byte budget (as llama.cpp's `--cache-ram`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

Snapshot = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of slots [0, n)


def snapshot_bytes(snapshot: Snapshot) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in snapshot)


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens two sequences share from the start."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


class PromptCache:
    """Token sequences -> KV snapshots, least recently used out past `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: OrderedDict[tuple[int, ...], Snapshot] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def best(self, prompt: list[int]) -> tuple[list[int], Snapshot, int] | None:
        """The snapshot sharing the longest prefix with `prompt`: (its tokens, the snapshot, tokens shared)."""
        found = max(((key, shared_prefix(key, prompt)) for key in self.entries), key=lambda kv: kv[1],
                    default=None)
        if found is None or found[1] == 0:
            return None
        key, shared = found
        self.entries.move_to_end(key)
        return list(key), self.entries[key], shared

    def put(self, tokens: list[int], snapshot: Snapshot) -> None:
        """Keeps a snapshot (replacing any entry that is a prefix of it), then evicts to the budget."""
        size = snapshot_bytes(snapshot)
        if size > self.budget or not tokens:
            return
        for key in [k for k in self.entries if tuple(tokens[:len(k)]) == k]:
            self._drop(key)
        self.entries[tuple(tokens)] = snapshot
        self.bytes += size
        while self.bytes > self.budget:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        self.bytes -= snapshot_bytes(self.entries.pop(key))
