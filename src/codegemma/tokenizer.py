"""Gemma tokenizer over tokenizer.json (`tokenizers`) or tokenizer.model (`sentencepiece`).

Text is never parsed into control tokens unless asked (`parse_special=True`): a user's file that
contains "<|fim_prefix|>" is tokenized as ordinary text. Decoding goes through one id -> bytes
table, so streaming can hold back an incomplete UTF-8 character.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from .errors import CodeGemmaError

FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"
FILE_SEPARATOR = "<|file_separator|>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
NAMED_SPECIALS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEPARATOR, START_OF_TURN, END_OF_TURN)
SPACE = "\u2581"  # SentencePiece's visible space
_RAW_BYTE_PIECE, _RAW_SPACE = re.compile(rb"<0x([0-9A-Fa-f]{2})>"), SPACE.encode()


class TokenizerError(CodeGemmaError, ValueError):
    """A tokenizer file that cannot be read, or one without a token this project needs."""


@dataclass(frozen=True)
class FimTokens:
    prefix: int
    middle: int
    suffix: int
    file_separator: int


class Pieces(Sequence[bytes]):
    """id -> bytes, held as one bytes object and a table of offsets: a list of 262k bytes objects (Gemma 3's
    vocabulary) costs about 12 MB, this about 3."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        blob = bytearray()
        self.starts = array("I", [0])
        for part in pieces:  # (never a list of them all at once)
            blob += part
            self.starts.append(len(blob))
        self.blob = bytes(blob)  # piece i is blob[starts[i]:starts[i + 1]]

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __iter__(self) -> Iterator[bytes]:
        blob, starts = self.blob, self.starts
        return (blob[a:b] for a, b in zip(starts, islice(starts, 1, None)))

    def __getitem__(self, i):  # an id (negative ids are not ids), or a slice
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not 0 <= i < len(self.starts) - 1:
            raise IndexError(f"token id {i} is outside the vocabulary")
        return self.blob[self.starts[i]:self.starts[i + 1]]


class Tokenizer:
    """Encodes and decodes; the backend only supplies `plain_encode`, which never yields special tokens."""

    def __init__(self, pieces: Sequence[bytes], specials: dict[str, int], plain_encode: Callable[[str], list[int]],
                 *, bos_id: int, eos_id: int, pad_id: int, source: str = "") -> None:
        blank = {bos_id, eos_id, pad_id}
        self.pieces = Pieces(b"" if i in blank else p for i, p in enumerate(pieces))  # id -> bytes the user sees
        self.specials = dict(specials)  # text -> id of every token `parse_special=True` recognises
        self._plain = plain_encode
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.source = source
        names = sorted(self.specials, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, names))) if names else None

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def token_id(self, text: str) -> int | None:
        return self.specials.get(text)

    @property
    def fim(self) -> FimTokens | None:
        """The FIM token ids, or None when the vocabulary has no FIM tokens (FIM is not native)."""
        ids = [self.specials.get(t) for t in (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEPARATOR)]
        return None if None in ids[:3] else FimTokens(*ids[:3], ids[3] if ids[3] is not None else -1)

    def encode(self, text: str, bos: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`; special-token text becomes control tokens only with parse_special."""
        ids: list[int] = []
        if parse_special and self._special_re is not None:
            pos = 0
            for m in self._special_re.finditer(text):
                ids += self._plain(text[pos:m.start()]) if m.start() > pos else []
                ids.append(self.specials[m.group()])
                pos = m.end()
            ids += self._plain(text[pos:]) if pos < len(text) else []
        elif text:
            ids = self._plain(text)
        if bos and not (ids and ids[0] == self.bos_id):  # a templated prompt may carry its own <bos>
            ids.insert(0, self.bos_id)
        return ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        try:
            return b"".join(self.pieces[i] for i in ids)
        except IndexError:
            bad = next(i for i in ids if not 0 <= i < len(self.pieces))
            raise TokenizerError(f"token id {bad} is outside the vocabulary (size {len(self.pieces)})") from None

    def decode(self, ids: Sequence[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class Utf8Stream:
    """Turns a stream of byte chunks into text without ever splitting a UTF-8 character."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> str:
        data = self._pending + data
        cut = _complete_prefix_len(data)
        self._pending = data[cut:]
        return data[:cut].decode("utf-8", errors="replace")

    def flush(self) -> str:
        rest, self._pending = self._pending, b""
        return rest.decode("utf-8", errors="replace")


_LEADS = ((0x80, 0x00), (0xE0, 0xC0), (0xF0, 0xE0), (0xF8, 0xF0))  # (mask, value) of 1..4-byte leads


def _complete_prefix_len(data: bytes) -> int:
    """Length of `data` without a trailing incomplete (but so far valid) UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte or ASCII
            need = next((n for n, (mask, lead) in enumerate(_LEADS, 1) if byte & mask == lead), 1)
            return len(data) - back if need > back else len(data)
    return len(data)


def piece_bytes(piece: str) -> bytes:
    return raw_piece_bytes(piece.encode("utf-8"))


def raw_piece_bytes(piece: bytes) -> bytes:
    """piece_bytes of a piece given as its UTF-8 bytes."""
    m = _RAW_BYTE_PIECE.fullmatch(piece) if piece.startswith(b"<0x") else None
    return bytes([int(m.group(1), 16)]) if m else piece.replace(_RAW_SPACE, b" ")


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """tokenizer.json when present (fast), else tokenizer.model."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return from_tokenizer_json(folder / "tokenizer.json")
    if (folder / "tokenizer.model").is_file():
        return from_sentencepiece(folder / "tokenizer.model")
    raise TokenizerError(f"{folder}: no tokenizer.json or tokenizer.model")


def _ids(specials: dict[str, int], pieces: Sequence[bytes], *, bos: int | None, eos: int | None,
         pad: int | None) -> dict[str, int]:
    def find(given: int | None, name: str, default: int) -> int:
        return given if given is not None else specials.get(name, default)
    return {"bos_id": find(bos, "<bos>", 2), "eos_id": find(eos, "<eos>", 1), "pad_id": find(pad, "<pad>", 0)}


def from_tokenizer_json(path: str | Path) -> Tokenizer:
    """A Hugging Face tokenizer.json; special set = tokens marked special plus the FIM and turn tokens."""
    from tokenizers import Tokenizer as HFTokenizer

    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        vocab: dict[str, int] = spec["model"]["vocab"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise TokenizerError(f"{path}: not a readable tokenizer.json ({exc})") from exc
    added = spec.get("added_tokens", [])
    specials = {t["content"]: t["id"] for t in added if t.get("special") or t["content"] in NAMED_SPECIALS}
    size = max([*vocab.values(), *(t["id"] for t in added)]) + 1
    pieces = [b""] * size
    for piece, i in vocab.items():
        pieces[i] = piece_bytes(piece)
    for t in added:
        pieces[t["id"]] = t["content"].encode("utf-8")
    spec["added_tokens"] = [t for t in added if t["content"] not in specials]  # never matched in plain text
    spec["normalizer"] = _without_dummy_prefix(spec.get("normalizer"))
    spec["post_processor"] = None
    try:
        plain = HFTokenizer.from_str(json.dumps(spec))
    except Exception as exc:
        raise TokenizerError(f"{path}: tokenizers cannot load it ({exc})") from exc

    def encode(text: str) -> list[int]:
        return plain.encode(text, add_special_tokens=False).ids

    return Tokenizer(pieces, specials, encode, **_ids(specials, pieces, bos=None, eos=None, pad=None), source=str(path))


def _without_dummy_prefix(normalizer: dict | None) -> dict | None:
    """Drops a Prepend("▁") normalizer: Gemma adds no dummy-prefix space."""
    if not normalizer:
        return normalizer
    if normalizer.get("type") == "Prepend":
        return None
    if normalizer.get("type") == "Sequence":
        steps = [n for n in normalizer["normalizers"] if n.get("type") != "Prepend"]
        return {"type": "Sequence", "normalizers": steps}
    return normalizer


def from_sentencepiece(path: str | Path) -> Tokenizer:
    """A SentencePiece tokenizer.model; control pieces and the FIM/turn tokens form the special set."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(path)
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise TokenizerError(f"{path}: not a SentencePiece model ({exc})") from exc
    if not proto.pieces:
        raise TokenizerError(f"{path}: not a SentencePiece model (no pieces)")
    kinds = pb.ModelProto.SentencePiece
    specials = {p.piece: i for i, p in enumerate(proto.pieces)
                if p.type == kinds.CONTROL or p.piece in NAMED_SPECIALS}
    pieces = [p.piece.encode() if p.piece in specials else piece_bytes(p.piece) for p in proto.pieces]
    for p in proto.pieces:
        if p.piece in specials:
            p.type = kinds.CONTROL  # control pieces are never matched in input text
    proto.normalizer_spec.add_dummy_prefix = False
    processor = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    def encode(text: str) -> list[int]:
        return processor.encode(text)

    ids = _ids(specials, pieces, bos=_valid(processor.bos_id()), eos=_valid(processor.eos_id()),
               pad=_valid(processor.pad_id()))
    return Tokenizer(pieces, specials, encode, **ids, source=str(path))


def _valid(i: int) -> int | None:
    return i if i >= 0 else None
