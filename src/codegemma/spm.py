"""SentencePiece-style BPE over a GGUF vocabulary, as llama.cpp's SPM tokenizer does it.

Port of llama.cpp's `llm_tokenizer_spm_session` (llama-vocab.cpp): user-defined tokens are cut out
of the text first (control tokens too when special tokens are parsed), then each remaining
fragment has spaces escaped to U+2581 and its adjacent symbols merged, highest score first
(ties: leftmost), with bytes as the fallback for pieces not in the vocabulary.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"


class SpmEncoder:
    def __init__(self, tokens: Sequence[str], scores: Sequence[float], types: Sequence[int], *,
                 add_space_prefix: bool = False) -> None:
        self.scores = list(scores)
        self.ids = {t: i for i, t in enumerate(tokens)}  # the last id wins on duplicates, as in llama.cpp
        self.add_space_prefix = add_space_prefix
        self.byte_ids = [self.ids.get(f"<0x{b:02X}>", -1) for b in range(256)]
        user = [t for t, k in zip(tokens, types) if k == USER_DEFINED and t]
        self._user_re = _alternation(user)

    def encode(self, text: str) -> list[int]:
        """Ids of text with user-defined tokens matched (control tokens are the caller's business)."""
        out: list[int] = []
        pos = 0
        first = True
        if self._user_re is not None:
            for m in self._user_re.finditer(text):
                if m.start() > pos:
                    self._merge(text[pos:m.start()], first, out)
                out.append(self.ids[m.group()])
                pos, first = m.end(), False
        if pos < len(text):
            self._merge(text[pos:], first, out)
        return out

    def _merge(self, fragment: str, first: bool, out: list[int]) -> None:
        text = ((" " if self.add_space_prefix and first else "") + fragment).replace(" ", SPACE)
        sym = list(text)  # one symbol per character; merged symbols hold their text, the right one ""
        n = len(sym)
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[float, int, int, str]] = []
        rev: dict[str, tuple[str, str]] = {}

        def add(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            joined = sym[left] + sym[right]
            tid = self.ids.get(joined)
            if tid is None:
                return
            heapq.heappush(heap, (-self.scores[tid], left, right, joined))
            rev[joined] = (sym[left], sym[right])

        for i in range(1, n):
            add(i - 1, i)
        while heap:
            _, left, right, joined = heapq.heappop(heap)
            if not sym[left] or not sym[right] or sym[left] + sym[right] != joined:
                continue
            sym[left], sym[right] = joined, ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add(prev[left], left)
            add(left, nxt[left])
        i = 0
        while i != -1:
            self._resegment(sym[i], rev, out)
            i = nxt[i]

    def _resegment(self, text: str, rev: dict[str, tuple[str, str]], out: list[int]) -> None:
        tid = self.ids.get(text)
        if tid is not None:
            out.append(tid)
        elif text in rev:
            left, right = rev[text]
            self._resegment(left, rev, out)
            self._resegment(right, rev, out)
        else:
            out.extend(self.byte_ids[b] for b in text.encode("utf-8"))


def _alternation(words: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching any of the words, longest first (llama.cpp tries longer tokens first)."""
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))
