"""Prompt-lookup drafts for speculative decoding (Saxena 2023; llama.cpp's lookup decoding).

Code completion repeats itself: names, lines and whole blocks of the prefix, the suffix or the text just
written come back. The draft for the next tokens is what followed the latest earlier occurrence of the
sequence's last n tokens (n = 3, then 2). The decode loop verifies a draft in one forward pass and keeps
the drafted tokens the model itself chooses (loop._speculative_steps).

Drafting adapts to how well it is doing: the draft length doubles after a draft accepted whole and drops
to one past the accepted part after a miss; while few drafts start right, drafting pauses and only
probes now and then, so text that does not repeat costs about what plain decoding costs.
"""

from __future__ import annotations

from collections.abc import Iterable

NGRAMS = (3, 2)  # lengths of the matched suffix, longest first
PROBE_EVERY = 8  # while paused, one draft per this many chances
PAUSE_BELOW = 0.3  # pause while fewer than this share of recent drafts start right


class PromptLookup:
    def __init__(self, tokens: Iterable[int], max_draft: int) -> None:
        self.tokens: list[int] = []
        self.follows: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token after its latest occurrence
        self.max_draft = max_draft
        self.limit = max_draft
        self.hit_rate = 1.0  # moving average: drafts whose first token was kept
        self.skipped = 0
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens) - 1  # the new token follows the n-grams that end just before it
        for n in NGRAMS:
            if end - n >= 0:
                self.follows[tuple(self.tokens[end - n:end])] = end

    def draft(self, room: int) -> list[int]:
        """Up to min(room, the current limit) tokens, or none where nothing matches or drafting pauses."""
        k = min(room, self.limit)
        if k <= 0:
            return []
        if self.hit_rate < PAUSE_BELOW:
            self.skipped += 1
            if self.skipped % PROBE_EVERY:
                return []
        for n in NGRAMS:
            if len(self.tokens) >= n:
                start = self.follows.get(tuple(self.tokens[-n:]))
                if start is not None:
                    return self._copy(start, k)
        return []

    def _copy(self, start: int, k: int) -> list[int]:
        """k tokens from `start`, running on into the draft itself where the sequence ends (a repeat that
        reaches the end of the text continues with its own period)."""
        draft = self.tokens[start:start + k]
        while len(draft) < k:
            i = start + len(draft) - len(self.tokens)  # an index into the draft, which is always behind
            draft.append(draft[i])
        return draft

    def verified(self, drafted: int, kept: int) -> None:
        """How a draft of `drafted` tokens went: `kept` of them were the model's own choices."""
        if drafted == 0:
            return
        self.hit_rate = 0.8 * self.hit_rate + 0.2 * (kept > 0)
        self.limit = min(self.max_draft, 2 * self.limit) if kept == drafted else max(1, kept + 1)
