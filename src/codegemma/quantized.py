"""Linear layers that use a GGUF file's quantized blocks directly.

Applied from outside the model (the loader swaps modules), so model.py stays one plain definition.

- QuantizedLinear keeps only the block bytes and dequantizes on each forward: the memory of the file,
  slower than dense weights.
- Int4Planes re-packs a block format into PyTorch's int4 matrix-vector kernel (AVX-512/AVX2 on CPU,
  bfloat16): decoding reads 4-8 bits per weight instead of 16. A format of 5-8 bits becomes two
  planes of 4 bits whose sum is the weight. The kernel is slower than a dense GEMM beyond a few rows,
  so Int4DecodeLinear keeps the dense weight for prompts and uses the planes for 1-4 rows.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import linear
from .weights.quants import AFFINE, KERNELS, affine_groups, dequantize_blocks

DECODE_ROWS = 4  # beyond this many rows the dense bf16 GEMM is faster than the int4 kernel
GROUP = 32
ROW_CHUNK = 4096  # rows packed at a time (a multiple of 16)


def int4_kernel_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")


class QuantizedLinear(nn.Module):
    def __init__(self, raw: torch.Tensor, type_name: str, out_features: int, in_features: int,
                 compute_dtype: torch.dtype) -> None:
        super().__init__()
        if type_name not in KERNELS:
            raise ValueError(f"{type_name} has no PyTorch kernel; load it dequantized")
        self.register_buffer("raw", raw, persistent=False)  # (n_blocks * block_bytes,) uint8
        self.type_name = type_name
        self.out_features, self.in_features = out_features, in_features
        self.compute_dtype = compute_dtype

    @property
    def weight(self) -> torch.Tensor:
        values = dequantize_blocks(self.raw, self.type_name, self.out_features * self.in_features)
        return values.reshape(self.out_features, self.in_features).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.type_name}"


def swap_in(model: nn.Module, name: str, raw: torch.Tensor, type_name: str, shape: tuple[int, int]) -> None:
    """Replaces the Linear whose weight is `name` (e.g. model.layers.0.mlp.up_proj.weight)."""
    parent, attr, old = _linear(model, name)
    if (old.out_features, old.in_features) != shape:
        raise ValueError(f"{name}: not a Linear of shape {shape}")
    setattr(parent, attr, QuantizedLinear(raw, type_name, shape[0], shape[1], old.weight.dtype))


def _linear(model: nn.Module, name: str) -> tuple[nn.Module, str, nn.Linear]:
    """The parent module, attribute name and Linear whose weight is `name`."""
    path = name.removesuffix(".weight").split(".")
    parent = model.get_submodule(".".join(path[:-1]))
    old = getattr(parent, path[-1])
    if not isinstance(old, nn.Linear):
        raise ValueError(f"{name}: not a Linear")
    return parent, path[-1], old


class Int4Planes(nn.Module):
    """x @ W.T for W given as int4 planes: sum over planes of (u - 8) * scale + zero, per 32-value group.

    Buffers only, none persistent: state dicts and checkpoints never see the planes. They are a copy
    of `source` (the dense weight) as loaded; once anything writes to it (training, load_state_dict),
    its version moves on and the planes stand aside for good.
    """

    def __init__(self, planes: list[tuple[torch.Tensor, torch.Tensor]], out_features: int) -> None:
        super().__init__()
        self.n_planes, self.out_features = len(planes), out_features
        self._source: list[torch.Tensor] = []  # a list, so the weight is not registered twice
        self._version = -1
        for i, (packed, scales_zeros) in enumerate(planes):
            self.register_buffer(f"packed{i}", packed, persistent=False)
            self.register_buffer(f"scales_zeros{i}", scales_zeros, persistent=False)

    def track(self, source: torch.Tensor) -> None:
        self._source, self._version = [source], source._version

    def applies(self, x: torch.Tensor) -> bool:
        """Decoding-sized bf16 CPU inputs outside autograd (the kernel has no backward), planes current:
        up to DECODE_ROWS rows, or one token for each of any number of sequences (B, 1, D)."""
        decoding = x.numel() <= DECODE_ROWS * x.shape[-1] or (x.dim() == 3 and x.shape[1] == 1)
        return (x.dtype == torch.bfloat16 and x.device.type == "cpu" and not torch.is_grad_enabled() and decoding
                and bool(self._source) and self._source[0]._version == self._version)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """DECODE_ROWS rows at a time: a row's result never depends on how many others share its batch."""
        x2 = x.reshape(-1, x.shape[-1])
        out = []
        for first in range(0, x2.shape[0], DECODE_ROWS):
            rows = x2[first:first + DECODE_ROWS]
            y = None
            for i in range(self.n_planes):
                part = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, getattr(self, f"packed{i}"), GROUP,
                                                                    getattr(self, f"scales_zeros{i}"))
                y = part if y is None else y + part
            out.append(y)
        return (out[0] if len(out) == 1 else torch.cat(out)).reshape(*x.shape[:-1], self.out_features)


class Int4DecodeLinear(nn.Linear):
    """A Linear (same weight, same state dict) that decodes through Int4Planes."""

    def __init__(self, weight: nn.Parameter, planes: Int4Planes) -> None:
        super().__init__(weight.shape[1], weight.shape[0], bias=False, device="meta")
        self.weight = weight
        self.int4 = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.int4(x) if self.int4.applies(x) else linear(x, self.weight)


def int4_planes(raw: torch.Tensor, type_name: str, out_features: int, in_features: int) -> Int4Planes | None:
    """The planes of a GGUF tensor (raw block bytes), or None where its format or shape does not fit.

    The weight is scale * q + offset per group. 4-bit q is one plane with zero = 8 * scale + offset.
    Wider q is split as lo + 16 * hi: the lo plane as above, the hi plane u = hi + 8 - c with scale
    16 * scale and zero 0, which adds 16 * scale * (hi - c); c = 1 for Q5_0 (offset -16 * scale), so
    every zero is then a power of two times the scale and exact in bfloat16. Rows are packed in
    chunks, so the temporaries stay small beside a 262k-row output head.
    """
    if type_name not in AFFINE or out_features % 16:
        return None
    per_block, nbytes = KERNELS[type_name][:2]  # blocks of 32 or 256 values: whole groups
    if in_features % per_block:
        return None
    row_bytes = in_features // per_block * nbytes
    chunks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for first in range(0, out_features, ROW_CHUNK):
        rows = min(ROW_CHUNK, out_features - first)
        chunks.append(_pack_rows(raw[first * row_bytes:(first + rows) * row_bytes], type_name, rows, in_features))
    planes = [(torch.cat([c[i][0] for c in chunks]), torch.cat([c[i][1] for c in chunks], dim=1))
              for i in range(len(chunks[0]))]
    return Int4Planes(planes, out_features)


def _pack_rows(raw: torch.Tensor, type_name: str, rows: int, cols: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    q, scale, offset, bits = affine_groups(raw, type_name)
    q = q.int().reshape(rows, cols)
    scale, offset = scale.reshape(rows, cols // GROUP), offset.reshape(rows, cols // GROUP)
    if bits == 4:
        parts = [(q, scale, 8 * scale + offset)]
    else:
        c = 1 if type_name == "Q5_0" else 0
        parts = [(q & 15, scale, 8 * scale + offset + 16 * c * scale),
                 ((q >> 4) + 8 - c, 16 * scale, torch.zeros_like(scale))]
    out = []
    for u, s, z in parts:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(u.contiguous(), 1)
        scales_zeros = torch.stack([s, z], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        out.append((packed, scales_zeros))  # (rows, cols / 2) uint8, (cols / 32, rows, 2)
    return out


def install_int4(model: nn.Module, name: str, raw: torch.Tensor, type_name: str) -> bool:
    """Gives the Linear `name` (or the tied output head, for model.embed_tokens.weight) int4 decoding."""
    head = name == "model.embed_tokens.weight"
    if head:
        weight = model.model.embed_tokens.weight
    else:
        parent, attr, dense = _linear(model, name)
        weight = dense.weight
    planes = int4_planes(raw, type_name, weight.shape[0], weight.shape[1])
    if planes is None:
        return False
    planes.track(weight)
    if head:
        model.decode_head = planes
    else:
        setattr(parent, attr, Int4DecodeLinear(weight, planes))
    return True
