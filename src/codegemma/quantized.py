"""Linear layers that keep GGUF weights in their quantized block format and dequantize on the fly.

Applied from outside the model (the loader swaps modules), so model.py stays one plain definition.
Memory is that of the file; each forward pays a dequantization, so decoding is slower than with
dequantized weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .weights.quants import KERNELS, dequantize_blocks


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
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.type_name}"


def swap_in(model: nn.Module, name: str, raw: torch.Tensor, type_name: str, shape: tuple[int, int]) -> None:
    """Replaces the Linear whose weight is `name` (e.g. model.layers.0.mlp.up_proj.weight)."""
    path = name.removesuffix(".weight").split(".")
    parent = model.get_submodule(".".join(path[:-1]))
    old = getattr(parent, path[-1])
    if not isinstance(old, nn.Linear) or (old.out_features, old.in_features) != shape:
        raise ValueError(f"{name}: cannot keep quantized (shape {shape})")
    setattr(parent, path[-1], QuantizedLinear(raw, type_name, shape[0], shape[1], old.weight.dtype))
