"""Training batches: packed pretraining sequences from token shards, and chat data for SFT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CodeGemmaError
from ..prompts import PromptError, chat_turns, encode_prompt, turn_prompt
from ..tokenizer import END_OF_TURN, START_OF_TURN, Tokenizer


class TrainDataError(CodeGemmaError, ValueError):
    """Training data that cannot be used: empty, out-of-vocabulary ids, malformed rows."""


@dataclass
class Example:
    tokens: np.ndarray  # (seq_len + 1,) int64
    mask: np.ndarray  # (seq_len,) float32: 1 where the next-token target counts


class PretrainData:
    """Fixed-length sequences (seq_len + 1 tokens, shifted for targets) from the data pipeline's shards.

    Every `val_every`-th sequence is held out for validation. Order is a seeded permutation per epoch,
    so (seed, position) fully determines what comes next.
    """

    def __init__(self, folder: str | Path, seq_len: int, vocab_size: int, seed: int, val_every: int = 50) -> None:
        from ..data.shards import ShardError, TokenShards
        try:
            shards = TokenShards(folder)
        except ShardError as exc:
            raise TrainDataError(str(exc)) from exc
        stream = shards.stream()  # memory-mapped: a corpus larger than memory trains too
        n = (stream.size - 1) // seq_len
        if n < 2:
            raise TrainDataError(f"{folder}: {stream.size} tokens are not enough for two sequences of {seq_len}")
        top = stream.max()
        if top >= vocab_size:
            raise TrainDataError(f"{folder}: token id {top} is beyond the model's vocabulary ({vocab_size})")
        self.stream, self.seq_len, self.seed = stream, seq_len, seed
        ids = np.arange(n)
        held = ids % val_every == val_every - 1 if n >= val_every else ids == n - 1
        self.train_ids, self.val_ids = ids[~held], ids[held]

    def example(self, i: int) -> Example:
        start = i * self.seq_len
        return Example(self.stream.window(start, self.seq_len + 1).astype(np.int64), np.ones(self.seq_len, np.float32))

    def train_example(self, position: int) -> Example:
        epoch, k = divmod(position, len(self.train_ids))
        order = np.random.default_rng(self.seed + epoch).permutation(self.train_ids)
        return self.example(int(order[k]))

    def val_examples(self, limit: int) -> Iterator[Example]:
        for i in self.val_ids[:limit]:
            yield self.example(int(i))


def sft_example(tokenizer: Tokenizer, messages: list[dict], seq_len: int) -> Example:
    """Gemma's turns, tokenized exactly as a chat prompt is (prompts.turn_prompt); the loss counts only the
    model's replies: their text and <end_of_turn>, not `<start_of_turn>model\n` or the newline after."""
    if tokenizer.token_id(START_OF_TURN) is None or tokenizer.token_id(END_OF_TURN) is None:
        raise TrainDataError("the tokenizer has no <start_of_turn>/<end_of_turn>; SFT needs Gemma's turn tokens")
    ids, labels = [tokenizer.bos_id], [False]
    for role, content in chat_turns(messages, open_turn=False):
        start, body, end, newline = (encode_prompt(tokenizer, [seg], bos=False) for seg in turn_prompt(role, content))
        head = len(_common_prefix(body, encode_prompt(tokenizer, [f"{role}\n"], bos=False)))
        ids += start + body + end + newline
        reply = role == "model"
        labels += [False] * (len(start) + head) + [reply] * (len(body) - head + len(end)) + [False] * len(newline)
    ids, labels = ids[:seq_len + 1], labels[:seq_len + 1]
    pad = seq_len + 1 - len(ids)
    tokens = np.array(ids + [tokenizer.pad_id] * pad, dtype=np.int64)
    mask = np.array(labels[1:] + [False] * pad, dtype=np.float32)  # target t+1 counts if it is a model token
    return Example(tokens, mask)


def _common_prefix(a: list[int], b: list[int]) -> list[int]:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:n]


class SftData:
    """JSONL of {"messages": [{"role", "content"}, ...]} with user/model turns (a system turn is folded in)."""

    def __init__(self, path: str | Path, tokenizer: Tokenizer, seq_len: int, seed: int, val_every: int = 20) -> None:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainDataError(f"cannot read {path}: {exc}") from exc
        examples = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                examples.append(sft_example(tokenizer, json.loads(line)["messages"], seq_len))
            except (ValueError, KeyError, TypeError, IndexError, PromptError) as exc:
                raise TrainDataError(f"{path}:{n}: expected {{\"messages\": [...]}} with alternating user/model "
                                     f"turns ({exc})") from exc
        if len(examples) < 2:
            raise TrainDataError(f"{path}: needs at least two conversations")
        if not any(e.mask.any() for e in examples):
            raise TrainDataError(f"{path}: no model turns to learn from")
        self.examples, self.seed = examples, seed
        ids = np.arange(len(examples))
        held = ids % val_every == val_every - 1 if len(ids) >= val_every else ids == len(ids) - 1
        self.train_ids, self.val_ids = ids[~held], ids[held]

    def train_example(self, position: int) -> Example:
        epoch, k = divmod(position, len(self.train_ids))
        return self.examples[int(np.random.default_rng(self.seed + epoch).permutation(self.train_ids)[k])]

    def val_examples(self, limit: int) -> Iterator[Example]:
        for i in self.val_ids[:limit]:
            yield self.examples[int(i)]


def collate(examples: list[Example], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = torch.from_numpy(np.stack([e.tokens for e in examples])).to(device)
    mask = torch.from_numpy(np.stack([e.mask for e in examples])).to(device)
    return tokens[:, :-1], tokens[:, 1:], mask


__all__ = ["PretrainData", "SftData", "TrainDataError", "collate", "sft_example"]
