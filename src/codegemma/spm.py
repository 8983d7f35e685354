"""SentencePiece-style BPE over a GGUF vocabulary, as llama.cpp's SPM tokenizer does it.

Port of llama.cpp's `llm_tokenizer_spm_session` (llama-vocab.cpp): user-defined tokens are cut out
of the text first (control tokens too when special tokens are parsed), then each remaining
fragment has spaces escaped to U+2581 and its adjacent symbols merged, highest score first
(ties: leftmost), with bytes as the fallback for pieces not in the vocabulary.
"""

from __future__ import annotations

import heapq
import re
from array import array
from collections.abc import Sequence

from .tokenizer import Pieces

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"


class SpmEncoder:
    def __init__(self, pieces: Sequence[bytes], scores: Sequence[float], types: Sequence[int], *,
                 add_space_prefix: bool = False) -> None:
        """pieces: each piece's UTF-8 bytes as the vocabulary holds them ("▁" for a space)."""
        self.scores = array("f", scores)  # float32, as the file stores them (a list of floats is 8 MB more)
        self.ids = Vocabulary(pieces)
        self.add_space_prefix = add_space_prefix
        self.byte_ids = [self.ids.get(f"<0x{b:02X}>".encode(), -1) for b in range(256)]
        user = [_text(p) for p, k in zip(pieces, types) if k == USER_DEFINED and p]
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
                out.append(self.ids[_utf8(m.group())])
                pos, first = m.end(), False
        if pos < len(text):
            self._merge(text[pos:], first, out)
        return out

    def _merge(self, fragment: str, first: bool, out: list[int]) -> None:
        text = ((" " if self.add_space_prefix and first else "") + fragment).replace(" ", SPACE)
        # one symbol per character (a lone surrogate as its own three bytes, which fall back to byte tokens);
        # merged symbols hold their bytes, the right one b""
        sym = [c.encode("utf-8", "surrogatepass") for c in text]
        n = len(sym)
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[float, int, int, bytes]] = []
        rev: dict[bytes, tuple[bytes, bytes]] = {}

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
            sym[left], sym[right] = joined, b""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add(prev[left], left)
            add(left, nxt[left])
        i = 0
        while i != -1:
            self._resegment(sym[i], rev, out)
            i = nxt[i]

    def _resegment(self, piece: bytes, rev: dict[bytes, tuple[bytes, bytes]], out: list[int]) -> None:
        tid = self.ids.get(piece)
        if tid is not None:
            out.append(tid)
        elif piece in rev:
            left, right = rev[piece]
            self._resegment(left, rev, out)
            self._resegment(right, rev, out)
        else:
            out.extend(self.byte_ids[b] for b in piece)


class Vocabulary:
    """piece bytes -> id, as a dict would, in a fraction of its memory: for Gemma 3's 262k pieces a dict costs
    18 MB (its entries, and an int object per id above 256), this table 2 MB. Open addressing over an array
    of ids, keyed by the pieces' hashes; the last id wins on duplicates, as in llama.cpp. The pieces are kept
    as tokenizer.Pieces (one bytes object: 3 MB, where a list of bytes objects is 12)."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces if isinstance(pieces, Pieces) else Pieces(pieces)
        size = 1 << max(2 * len(self.pieces) - 1, 1).bit_length()  # at most half full
        self.mask = mask = size - 1
        self.table = table = array("i", [-1]) * size
        for i, piece in enumerate(self.pieces):
            h = hash(piece) & mask
            while table[h] >= 0 and self.pieces[table[h]] != piece:
                h = (h + 1) & mask
            table[h] = i

    def get(self, piece: bytes, default: int | None = None) -> int | None:
        blob, starts, table, mask, n = self.pieces.blob, self.pieces.starts, self.table, self.mask, len(piece)
        h = hash(piece) & mask
        while (i := table[h]) >= 0:
            start = starts[i]
            if starts[i + 1] - start == n and blob.startswith(piece, start):
                return i
            h = (h + 1) & mask
        return default

    def __getitem__(self, piece: bytes) -> int:
        i = self.get(piece)
        if i is None:
            raise KeyError(piece)
        return i


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", "surrogateescape")


def _utf8(piece: str) -> bytes:
    """The bytes of a piece's text (_text's inverse)."""
    return piece.encode("utf-8", "surrogateescape")


def _alternation(words: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching any of the words, longest first (llama.cpp tries longer tokens first)."""
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))
