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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

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
        array = np.frombuffer(self._map, dtype=np.uint8)
        self.tensors = [Tensor(name, dims, kind, _view(array, start + offset, dims, kind, name))
                        for name, dims, kind, offset in infos]

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
        if item in _NUMPY:  # numbers in one piece
            size = np.dtype(_NUMPY[item]).itemsize
            return np.frombuffer(self._read(count * size), dtype=_NUMPY[item]).tolist()
        return [self._value(item) for _ in range(count)]


def _view(array: np.ndarray, offset: int, dims: tuple[int, ...], kind: GGMLQuantizationType, name: str) -> np.ndarray:
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
    if offset + nbytes > array.size:
        raise GGUFFormatError(f"tensor {name} runs past the end of the file")
    return array[offset:offset + nbytes].view(dtype).reshape(shape)
