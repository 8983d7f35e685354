"""A compact GGUF reader: metadata as plain values, tensors as numpy views of one memory map.

The `gguf` package's GGUFReader keeps a numpy view per part of every metadata field (about a million
for a 262k-token vocabulary): some 350 MB while loading, and heap fragments that are never given back.
This reader decodes the header once into plain Python values and keeps nothing else; tensor data stays
in the file's mapping (shapes and dtypes as GGUFReader gives them, so the `gguf` package's
dequantization accepts them). Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np


class GGMLQuantizationType(IntEnum):
    """Tensor types, numbered and named as ggml numbers them (the `gguf` package's enum of the same name; ours,
    so that reading a file does not import that package, its tokenizer and YAML modules, a few MB)."""

    F32, F16, Q4_0, Q4_1 = 0, 1, 2, 3
    Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K = 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS = 16, 17, 18, 19, 20, 21, 22, 23
    I8, I16, I32, I64, F64, IQ1_M, BF16 = 24, 25, 26, 27, 28, 29, 30
    TQ1_0, TQ2_0, MXFP4 = 34, 35, 39


# type -> (values per block, bytes per block), as ggml's type traits
GGML_QUANT_SIZES = {
    GGMLQuantizationType.F32: (1, 4), GGMLQuantizationType.F16: (1, 2), GGMLQuantizationType.Q4_0: (32, 18),
    GGMLQuantizationType.Q4_1: (32, 20), GGMLQuantizationType.Q5_0: (32, 22), GGMLQuantizationType.Q5_1: (32, 24),
    GGMLQuantizationType.Q8_0: (32, 34), GGMLQuantizationType.Q8_1: (32, 40), GGMLQuantizationType.Q2_K: (256, 84),
    GGMLQuantizationType.Q3_K: (256, 110), GGMLQuantizationType.Q4_K: (256, 144),
    GGMLQuantizationType.Q5_K: (256, 176), GGMLQuantizationType.Q6_K: (256, 210),
    GGMLQuantizationType.Q8_K: (256, 292), GGMLQuantizationType.IQ2_XXS: (256, 66),
    GGMLQuantizationType.IQ2_XS: (256, 74), GGMLQuantizationType.IQ3_XXS: (256, 98),
    GGMLQuantizationType.IQ1_S: (256, 50), GGMLQuantizationType.IQ4_NL: (32, 18),
    GGMLQuantizationType.IQ3_S: (256, 110), GGMLQuantizationType.IQ2_S: (256, 82),
    GGMLQuantizationType.IQ4_XS: (256, 136), GGMLQuantizationType.I8: (1, 1), GGMLQuantizationType.I16: (1, 2),
    GGMLQuantizationType.I32: (1, 4), GGMLQuantizationType.I64: (1, 8), GGMLQuantizationType.F64: (1, 8),
    GGMLQuantizationType.IQ1_M: (256, 56), GGMLQuantizationType.BF16: (1, 2),
    GGMLQuantizationType.TQ1_0: (256, 54), GGMLQuantizationType.TQ2_0: (256, 66),
    GGMLQuantizationType.MXFP4: (32, 17),
}
MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# value type -> (struct format, size) for scalars; 8 = string, 9 = array
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4),
            7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
          7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_DENSE = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
          GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
          GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
          GGMLQuantizationType.I64: np.int64}


class GGUFFormatError(ValueError):
    """Bytes that are not a GGUF file this reader understands."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # fastest-varying dimension first, as GGUF stores it
    tensor_type: GGMLQuantizationType
    data: np.ndarray  # a read-only view of the mapping: elements, or bytes (rows of blocks) for block formats


class GGUFFile:
    """`metadata` (key -> str, int, float, bool or list) and `tensors` of a GGUF file (version 2 or 3)."""

    def __init__(self, path: str | Path) -> None:
        with open(path, "rb") as f:
            # MAP_POPULATE: the pages are mapped now, at load, not faulted in one by one by the first prompt
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            self._map = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
        self._buf = memoryview(self._map)
        self._pos = 0
        if self._read(4) != MAGIC:
            raise GGUFFormatError("no GGUF magic")
        version = self._scalar(4)
        if version not in (2, 3):
            raise GGUFFormatError(f"GGUF version {version} (this reader reads 2 and 3)")
        n_tensors, n_kv = self._scalar(10), self._scalar(10)
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._scalar(4))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = tuple(self._scalar(10) for _ in range(self._scalar(4)))
            infos.append((name, dims, GGMLQuantizationType(self._scalar(4)), self._scalar(10)))
        alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        start = -(-self._pos // alignment) * alignment
        data = np.frombuffer(self._map, dtype=np.uint8)
        self._base = data.ctypes.data  # the mapping's address (release)
        self.tensors = [Tensor(name, dims, kind, _view(data, start + offset, dims, kind, name))
                        for name, dims, kind, offset in infos]

    def release(self, start: int, end: int) -> None:
        """Lets go of the pages wholly inside addresses [start, end) of this file's mapping (an array's
        data pointer plus offsets): they leave the process's memory, and come back from the file if read."""
        base = self._base
        if not base <= start <= end <= base + len(self._map):
            raise ValueError("release: the addresses are not inside this file's mapping")
        page = mmap.PAGESIZE
        lo, hi = -(-(start - base) // page) * page, (end - base) // page * page
        if hi > lo:
            try:
                self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except OSError:  # a system that refuses: the pages stay, nothing else changes
                pass

    def _read(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            raise GGUFFormatError("the file ends inside its header")
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return bytes(out)

    def _scalar(self, kind: int) -> Any:
        fmt, size = _SCALARS[kind]
        return struct.unpack(fmt, self._read(size))[0]

    def _string(self) -> str:
        return self._read(self._scalar(10)).decode("utf-8", errors="surrogateescape")

    def _value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self._scalar(kind)
        if kind == 8:
            return self._string()
        if kind != 9:
            raise GGUFFormatError(f"unknown metadata value type {kind}")
        item, count = self._scalar(4), self._scalar(10)
        if item in _NUMPY:  # numbers in one piece, kept compact (262k scores as a list of floats: 8 MB)
            size = np.dtype(_NUMPY[item]).itemsize
            values = np.frombuffer(self._read(count * size), dtype=_NUMPY[item])
            return values.tolist() if item == 7 else array(values.dtype.char, values.tobytes())  # (no bool array)
        if item == 8:
            return self._strings(count)
        return [self._value(item) for _ in range(count)]

    def _strings(self, count: int) -> StringArray:
        starts = array("Q")
        for _ in range(count):
            n = self._scalar(10)
            if self._pos + n > len(self._buf):
                raise GGUFFormatError("the file ends inside its header")
            starts.append(self._pos)
            self._pos += n
        starts.append(self._pos + 8)  # as if one more string followed: string i ends 8 bytes before i + 1 starts
        return StringArray(self._buf, starts)


class StringArray(Sequence[str]):
    """An array of strings left where it is in the file's mapping (a vocabulary of 262k pieces as str objects
    is about 20 MB, and their heap fragments stay after they are freed): `raw(i)` gives the bytes, `[i]` the
    text (invalid UTF-8 decoded with surrogateescape, so `.encode("utf-8", "surrogateescape")` gives the
    bytes back). The strings lie one after the other, each after its 8-byte length: one offset a string."""

    def __init__(self, buf: memoryview, starts: array) -> None:
        self._buf, self._starts = buf, starts

    def __len__(self) -> int:
        return len(self._starts) - 1

    def raw(self, i: int) -> bytes:
        if not -len(self) <= i < len(self):
            raise IndexError("string index out of range")
        i %= len(self)
        return bytes(self._buf[self._starts[i]:self._starts[i + 1] - 8])

    def raws(self) -> Iterator[bytes]:
        """Every string's bytes, in order."""
        buf, starts = self._buf, self._starts
        return (bytes(buf[a:b - 8]) for a, b in zip(starts, islice(starts, 1, None)))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.raw(i).decode("utf-8", errors="surrogateescape")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


def _view(data: np.ndarray, offset: int, dims: tuple[int, ...], kind: GGMLQuantizationType, name: str) -> np.ndarray:
    """The tensor's bytes as GGUFReader shapes them: elements (slowest dimension first), or for block
    formats rows of bytes (the last dimension in bytes)."""
    shape = tuple(reversed(dims)) or (1,)
    count = int(np.prod(shape))
    if kind in _DENSE:
        dtype = np.dtype(_DENSE[kind])
        nbytes = count * dtype.itemsize
    else:  # block formats, and BF16 (blocks of one value), as bytes
        block, size = GGML_QUANT_SIZES[kind]
        if shape[-1] % block:
            raise GGUFFormatError(f"tensor {name}: rows of {shape[-1]} values are not whole {kind.name} blocks")
        shape = (*shape[:-1], shape[-1] // block * size)
        dtype, nbytes = np.dtype(np.uint8), count // block * size
    if offset + nbytes > data.size:
        raise GGUFFormatError(f"tensor {name} runs past the end of the file")
    return data[offset:offset + nbytes].view(dtype).reshape(shape)
