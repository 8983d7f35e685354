"""From token steps to text: UTF-8-safe streaming and stop strings that may span tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..model import GemmaForCausalLM
from ..tokenizer import Tokenizer, Utf8Stream
from .loop import GenerationSettings, decode_steps


class StopMatcher:
    """Holds back text that could be the start of a stop string; the stop string itself is never emitted."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Returns the text that is safe to show; sets `stopped` once a stop string appears."""
        if self.stopped:
            return ""
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return buf[:min(hits)]
        keep = max((_overlap(buf, s) for s in self.stops), default=0)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        rest, self._held = ("" if self.stopped else self._held), ""
        return rest


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of stop."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-n:]):
            return n
    return 0


@dataclass
class TextEvent:
    row: int
    text: str  # new text for this row (may be empty)
    token: int | None  # the token that produced it (None for a final flush)
    finish_reason: str | None = None  # "stop" or "length" on the row's last event


class RowText:
    """One sequence's text as its tokens arrive: UTF-8 pieces joined safely, stop strings held back and cut.
    Stop tokens and ids outside the vocabulary add no text."""

    def __init__(self, tokenizer: Tokenizer, stop_ids: Sequence[int], stop_strings: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids)
        self.stream = Utf8Stream()
        self.matcher = StopMatcher(stop_strings)

    def push(self, token: int, finished: str | None) -> tuple[str, str | None]:
        """The text `token` adds, and the finish reason: `finished` ("stop", "length" or None), or "stop"
        once a stop string appears. A finished row's held-back text is flushed."""
        tok = self.tokenizer
        piece = b"" if token in self.stop_ids or token >= tok.vocab_size else tok.pieces[token]
        text = self.matcher.push(self.stream.feed(piece))
        if self.matcher.stopped:
            return text, "stop"
        if finished:
            text += self.matcher.push(self.stream.flush()) + self.matcher.flush()
        return text, finished


def stream_text(model: GemmaForCausalLM, tokenizer: Tokenizer, prompts: Sequence[Sequence[int]],
                settings: GenerationSettings, stop_strings: Sequence[str] = (),
                context: int | None = None) -> Iterator[TextEvent]:
    """Text events per row; stop tokens and stop strings end a row and never appear in its text."""
    rows = [RowText(tokenizer, settings.stop_ids, stop_strings) for _ in prompts]
    done = [False] * len(prompts)
    for step in decode_steps(model, tokenizer_safe(prompts, tokenizer), settings, context=context):
        for row, token in enumerate(step.tokens):
            if token is None or done[row]:
                continue
            text, reason = rows[row].push(token, step.finished[row])
            step.finished[row] = reason
            done[row] = reason is not None
            yield TextEvent(row, text, token, reason)


def tokenizer_safe(prompts: Sequence[Sequence[int]], tokenizer: Tokenizer) -> Sequence[Sequence[int]]:
    """Checks prompt ids against the vocabulary before they reach the embedding."""
    for p in prompts:
        for t in p:
            if not 0 <= t < tokenizer.vocab_size:
                raise ValueError(f"token id {t} is outside the vocabulary (size {tokenizer.vocab_size})")
    return prompts
