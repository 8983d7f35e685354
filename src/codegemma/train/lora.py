"""Low-rank adapters (LoRA, Hu et al. 2021) on attention and MLP projections, merge and export."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) * B(A(x)); the base weight is frozen, B starts at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                               dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=False, device=self.base.weight.device,
                        dtype=self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + (self.lora_b @ self.lora_a) * self.scale)
        return out


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets=DEFAULT_TARGETS) -> int:
    """Freezes every parameter and wraps the target projections; returns how many were wrapped."""
    for p in model.parameters():
        p.requires_grad_(False)
    count = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                count += 1
    if count == 0:
        raise ValueError(f"no projection named {', '.join(targets)} to adapt")
    return count


def merge_lora(model: nn.Module) -> None:
    """Folds every adapter into its base weight, leaving plain Linear layers (the model's usual names)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    for p in model.parameters():
        p.requires_grad_(True)
