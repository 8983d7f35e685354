"""Quantized matrix-vector products on GGUF blocks: a C++ torch.library op built on first use, or PyTorch.

`qgemv(x, weights)` gives x @ W.T for each GGUF matrix W read in place from its block bytes, float32
accumulation; `dequant_rows(weight, ids)` gives rows of W in float32 or bfloat16. Both use exactly the
float32 weight values of the `gguf` package's dequantization. `pack(W)` rearranges a Q8_0 matrix 16 rows
at a time for `packed_dot` (bfloat16 activations, AVX512-BF16: the output head) and `packed_rows`.

The C++ source (qmatmul.cpp) is compiled once per machine with torch.utils.cpp_extension (-O3
-march=native, so AVX-512 or AVX2 as the CPU has) into ~/.cache/codegemma/kernels/<key>, where the key
hashes the source, torch's version, the compiler and the CPU's flags: a cache copied to another CPU
is never used there. Where no compiler is found or the build fails, the same ops run in PyTorch
(`backend()` says which; CODEGEMMA_KERNELS=torch forces it), slower and just as exact.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..weights.quants import KERNELS, dequantize_blocks

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("qmatmul.cpp")

# ggml type ids (ggml.h) of the formats the kernels read
GGML_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10,
              "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
_DENSE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

_lock = threading.Lock()
_backend: str | None = None


@dataclass(frozen=True)
class GGUFMatrix:
    """A (rows, cols) matrix in a GGML format: its block bytes (a flat uint8 tensor, usually a view of
    the memory-mapped file, never written) and its format's name."""

    raw: torch.Tensor
    type_name: str
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.type_name not in GGML_TYPES:
            raise ValueError(f"{self.type_name}: no kernel for this GGML format")
        per_block, nbytes = block_shape(self.type_name)
        if self.cols % per_block or self.raw.numel() != self.rows * (self.cols // per_block) * nbytes:
            raise ValueError(f"{self.type_name}: {self.raw.numel()} bytes cannot hold {self.rows} x {self.cols} values")

    @property
    def type_id(self) -> int:
        return GGML_TYPES[self.type_name]


def block_shape(type_name: str) -> tuple[int, int]:
    """(values, bytes) per block."""
    if type_name in _DENSE:
        return 1, _DENSE[type_name].itemsize
    return KERNELS[type_name][:2]


def supported(type_name: str, cols: int) -> bool:
    """Whether a matrix of this format and row length goes through the kernels (rows of whole blocks and
    whole vectors of 16 lanes)."""
    return type_name in GGML_TYPES and cols % 16 == 0 and cols % block_shape(type_name)[0] == 0


def backend() -> str:
    """'cpp' (the compiled op) or 'torch' (the fallback); builds the op on first call."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = _load()
        return _backend


def qgemv(x: torch.Tensor, weights: list[GGUFMatrix], *, f32_out: bool = False) -> list[torch.Tensor]:
    """x (..., cols) @ W.T for each W: float32 accumulation; results in x's dtype, or float32 with
    f32_out. A row's result does not depend on how many rows x has."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if backend() == "cpp":
        outs = torch.ops.codegemma.qgemv(x2, [w.raw for w in weights], [w.type_id for w in weights],
                                         [w.rows for w in weights], f32_out)
    else:
        outs = [_qgemv_torch(x2, w, f32_out) for w in weights]
    return [o.reshape(*lead, o.shape[-1]) for o in outs]


def dequant_rows(w: GGUFMatrix, ids: torch.Tensor | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows `ids` (all rows if None) of W: float32, or bfloat16 (the float32 value rounded once)."""
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dequant_rows gives float32 or bfloat16, not {dtype}")
    if backend() == "cpp":
        return torch.ops.codegemma.dequant_rows(w.raw, w.type_id, w.rows, w.cols, ids, dtype == torch.bfloat16)
    rows = torch.arange(w.rows) if ids is None else ids.reshape(-1).long()
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= w.rows):
        raise IndexError("row ids out of range")
    return torch.cat([_rows_torch(w, chunk) for chunk in rows.split(4096)]).to(dtype) if rows.numel() else \
        torch.empty(0, w.cols, dtype=dtype)


def dequant_as(w: GGUFMatrix, ids: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """Rows `ids` (all if None) in any floating dtype: dequantized straight into float32 or bfloat16, else
    converted from float32."""
    return dequant_rows(w, ids, dtype if dtype == torch.bfloat16 else torch.float32).to(dtype)


_scratch = threading.local()


def dequant_matrix(w: GGUFMatrix, dtype: torch.dtype) -> torch.Tensor:
    """All of W in float32 or bfloat16, for a GEMM that uses it at once. With the compiled op the values go to
    a buffer of this thread's, reused by every call (grown to the largest matrix): valid until this thread's
    next call. A prompt's projections otherwise allocate and free a matrix each, of a dozen sizes, which
    scatters the heap (tens of MB of peak memory on a 512-token prefill of the default model)."""
    if backend() != "cpp" or dtype not in (torch.float32, torch.bfloat16):
        return dequant_as(w, None, dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buf = buffers.get(dtype)
    if buf is None or buf.numel() < w.rows * w.cols:
        with torch.inference_mode(False):  # a normal tensor: written in place in and out of inference mode
            buf = buffers[dtype] = torch.empty(w.rows * w.cols, dtype=dtype)
    torch.ops.codegemma.dequant_into(w.raw, w.type_id, w.rows, w.cols, buf)
    return buf[:w.rows * w.cols].view(w.rows, w.cols)


PACK_ROWS = 16  # rows a group of a packed matrix (qmatmul.cpp's PACK_ROWS)


def packable(w: GGUFMatrix) -> bool:
    """Whether W can be packed for bfloat16 activations (`pack`): Q8_0, rows in 16s, and compiled kernels
    with the bfloat16 dot products (AVX512-BF16)."""
    return (w.type_name == "Q8_0" and w.rows % PACK_ROWS == 0 and backend() == "cpp"
            and bool(torch.ops.codegemma.bf16_dot()))


def pack(w: GGUFMatrix, *, release=None, chunk_rows: int = 4096) -> torch.Tensor:
    """W's blocks rearranged for `packed_dot` (16 rows interleaved a block; see qmatmul.cpp): as many bytes as
    W. `release(start, end)`, if given, is called with the addresses of each span of w.raw's bytes once it is
    packed, so a caller can let the file's pages go as it goes (the peak holds one chunk twice, not W)."""
    if not packable(w):
        raise ValueError(f"{w.type_name} ({w.rows} x {w.cols}): not packable here")
    packed = torch.empty(w.raw.numel(), dtype=torch.uint8)
    row_bytes, address = w.raw.numel() // w.rows, w.raw.data_ptr()
    for first in range(0, w.rows, chunk_rows):
        count = min(chunk_rows, w.rows - first)
        torch.ops.codegemma.pack_q8_0(w.raw, w.rows, w.cols, packed, first, count)
        if release is not None:
            release(address + first * row_bytes, address + (first + count) * row_bytes)
    return packed


def packed_dot(x: torch.Tensor, packed: torch.Tensor, w: GGUFMatrix) -> torch.Tensor:
    """x (..., cols) bfloat16 @ W.T from W packed: float32. The exact weights, as qgemv; a row's result does
    not depend on how many rows x has."""
    out = torch.ops.codegemma.packed_dot(x.reshape(-1, x.shape[-1]), packed, w.rows, w.cols)
    return out.reshape(*x.shape[:-1], w.rows)


def packed_rows(packed: torch.Tensor, w: GGUFMatrix, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows `ids` of W from W packed, as dequant_as gives them from the blocks."""
    rows = torch.ops.codegemma.packed_rows(packed, w.rows, w.cols, ids.reshape(-1), dtype == torch.bfloat16)
    return rows.to(dtype)


# ---- the PyTorch fallback ---------------------------------------------------------------------------------

def _rows_torch(w: GGUFMatrix, rows: torch.Tensor) -> torch.Tensor:
    per_block, nbytes = block_shape(w.type_name)
    row_bytes = w.cols // per_block * nbytes
    raw = w.raw.view(-1, row_bytes)[rows]
    if w.type_name in _DENSE:
        return raw.view(_DENSE[w.type_name]).float()
    return dequantize_blocks(raw.reshape(-1), w.type_name, rows.numel() * w.cols).reshape(-1, w.cols)


def _qgemv_torch(x: torch.Tensor, w: GGUFMatrix, f32_out: bool) -> torch.Tensor:
    """Row by row (torch.mv), so each row's result is the same whatever the number of rows."""
    xf = x.float()
    out = torch.empty(x.shape[0], w.rows)
    for first in range(0, w.rows, 8192):  # bounded temporaries beside a 262k-row head
        block = _rows_torch(w, torch.arange(first, min(first + 8192, w.rows)))
        for r in range(x.shape[0]):
            out[r, first:first + block.shape[0]] = torch.mv(block, xf[r])
    return out if f32_out else out.to(x.dtype)


# ---- building the C++ op -----------------------------------------------------------------------------------

def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "codegemma" / "kernels"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(compiler: str) -> str:
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), compiler.encode(), _cpu_flags().encode()):
        h.update(part)
    return h.hexdigest()[:16]


def _load() -> str:
    if os.environ.get("CODEGEMMA_KERNELS", "").lower() == "torch":
        return "torch"
    if platform.machine() not in ("x86_64", "AMD64"):
        log.info("codegemma kernels: %s is not x86-64; using the PyTorch fallback", platform.machine())
        return "torch"
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if compiler is None:
        log.warning("codegemma kernels: no C++ compiler found; using the slower PyTorch fallback")
        return "torch"
    key = _key(compiler)
    build = cache_dir() / key
    name = f"codegemma_qmatmul_{key}"
    built = build / f"{name}.so"
    if built.is_file():  # the key names its source, torch, compiler and CPU: load it without setuptools
        try:
            torch.ops.load_library(str(built))
            return "cpp"
        except OSError as exc:
            log.info("codegemma kernels: %s does not load (%s); building it again", built, exc)
    try:
        from torch.utils import cpp_extension

        build.mkdir(parents=True, exist_ok=True)
        cpp_extension.load(name=name, sources=[str(SOURCE)], build_directory=str(build), is_python_module=False,
                           extra_cflags=["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp"],
                           extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as exc:  # any build failure: the fallback is exact too
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        reason = next((line for line in lines if "error" in line.lower()), lines[-1])
        log.warning("codegemma kernels: building %s failed (%s); using the slower PyTorch fallback",
                    SOURCE.name, reason.strip())
        return "torch"
    return "cpp"
