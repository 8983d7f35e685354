"""Projections and the embedding read straight from a GGUF file's blocks (codegemma.kernels).

Applied from outside the model (the GGUF loader swaps these modules in), so model.py stays one plain
definition. The block bytes are views of the memory-mapped file: no second copy of a weight is kept.

- GGUFLinear: x @ W.T. Up to KERNEL_ROWS rows (decoding, speculative verification, batched sequences)
  go through the matrix-vector kernel, which reads the blocks in place and gives each row the same
  result however many rows share the call. Longer inputs (prompts) multiply by W dequantized into the
  activation dtype for that call, so they run on oneDNN's GEMMs.
- GGUFEmbedding: the (tied) embedding, rows dequantized as they are looked up; as the output head it
  is the kernel with float32 logits. A Q8_0 head of a bfloat16 model is packed at load (`pack_head`):
  16 rows interleaved, which the bfloat16 dot-product kernel reads in order (the file's pages of it are
  let go, so memory holds it once).

Both give exactly the float32 weights of the `gguf` package's dequantization (bfloat16 activations
round those once, as a bfloat16 dense copy would). Inference only: there is no backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import GGUFMatrix, dequant_as, dequant_matrix, pack, packable, packed_dot, packed_rows, qgemv

KERNEL_ROWS = 16  # beyond this many rows a dequantized GEMM is faster than the matrix-vector kernel


def _kernel_rows(x: torch.Tensor) -> bool:
    return x.numel() <= KERNEL_ROWS * x.shape[-1]


class GGUFLinear(nn.Module):
    def __init__(self, matrix: GGUFMatrix) -> None:
        super().__init__()
        self.matrix = matrix
        self.in_features, self.out_features = matrix.cols, matrix.rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("GGUF quantized weights are for inference; load with keep_quantized=False to train")
        if _kernel_rows(x):
            return qgemv(x, [self.matrix])[0]
        return F.linear(x, dequant_matrix(self.matrix, x.dtype))

    @staticmethod
    def fused(x: torch.Tensor, layers) -> list[torch.Tensor] | None:
        """x through several of these in one kernel call (q/k/v, gate/up), or None where that does not apply."""
        if not _kernel_rows(x) or not all(isinstance(layer, GGUFLinear) for layer in layers):
            return None
        return qgemv(x, [layer.matrix for layer in layers])

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.matrix.type_name}"


class GGUFEmbedding(nn.Module):
    def __init__(self, matrix: GGUFMatrix, dtype: torch.dtype) -> None:
        super().__init__()
        self.matrix, self.dtype = matrix, dtype
        self.num_embeddings, self.embedding_dim = matrix.rows, matrix.cols
        self.packed: torch.Tensor | None = None  # the matrix packed for bfloat16 activations (kernels.pack)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = dequant_as(self.matrix, flat, self.dtype) if self.packed is None else \
            packed_rows(self.packed, self.matrix, flat, self.dtype)
        return rows.reshape(*ids.shape, self.embedding_dim)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W.T in float32, W the embedding (the tied output head)."""
        if self.packed is not None and x.dtype == torch.bfloat16:
            return packed_dot(x, self.packed, self.matrix)
        return qgemv(x, [self.matrix], f32_out=True)[0]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.matrix.type_name}" + \
            (", packed" if self.packed is not None else "")


def pack_head(model: nn.Module, release=None) -> bool:
    """Packs the model's embedding (its output head) for bfloat16 activations where it can be
    (kernels.packable); `release(start, end)` gets the addresses of each packed span of its bytes (kernels.pack).
    True when packed."""
    head = model.model.embed_tokens
    if not isinstance(head, GGUFEmbedding) or head.dtype != torch.bfloat16 or not packable(head.matrix):
        return False
    head.packed = pack(head.matrix, release=release)
    return True


class BlockStep:
    """A model.Block's forward for single tokens (decoding, speculative verification, batched sequences) as
    one kernel call, torch.ops.codegemma.decode_block: the same functions and roundings as the block's
    separate fused ops, without their Python. For blocks whose seven projections read a GGUF file's
    blocks; norm gains are taken when fused (the model is for inference)."""

    def __init__(self, block: nn.Module) -> None:
        attn, projections = block.self_attn, self.projections(block)
        self.weights = [p.matrix.raw for p in projections]
        self.types = [p.matrix.type_id for p in projections]
        self.rows = [p.matrix.rows for p in projections]
        norms = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm", "self_attn.q_norm", "self_attn.k_norm"]
        self.gains = [_gain(block.get_submodule(n)) if _has(block, n) else None for n in norms]
        self.eps = block.input_layernorm.eps
        self.shape = (attn.n_heads, attn.n_kv, attn.head_dim)
        self.scale, self.softcap = attn.scale, attn.softcap or 0.0

    @staticmethod
    def projections(block: nn.Module) -> list[nn.Module]:
        """q, k, v, o, gate, up, down: the op's order."""
        attn, mlp = block.self_attn, block.mlp
        return [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]

    @classmethod
    def applies(cls, block: nn.Module) -> bool:
        return all(isinstance(p, GGUFLinear) for p in cls.projections(block))

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask, start, cache, row: int | None):
        """As Block.forward: x (B, 1, D); `start` a slot for every row (`row`: the one row) or a model.Rows;
        mask the first key each token may see (an int, a list of them, None: all)."""
        if isinstance(start, int):
            rows, slots = ([row] if row is not None else list(range(x.shape[0]))), [start] * x.shape[0]
            firsts = [mask or 0] * x.shape[0]
        else:
            rows, slots, firsts = list(start.rows), list(start.positions), [m or 0 for m in mask]
        if max(slots) >= cache.max_len:  # as KVCache says it
            raise ValueError(f"KV cache holds {cache.max_len} tokens; slot {max(slots)} requested")
        return torch.ops.codegemma.decode_block(x, self.weights, self.types, self.rows, self.gains, cache.k, cache.v,
                                                rows, slots, firsts, cos, sin, *self.shape, self.eps, self.scale,
                                                self.softcap)


def fuse_blocks(model: nn.Module) -> int:
    """Gives every block whose projections all read GGUF blocks its BlockStep (the compiled kernels must
    have built: kernels.backend() == 'cpp'); returns how many."""
    blocks = [b for b in model.model.layers if BlockStep.applies(b)]
    for block in blocks:
        block.step = BlockStep(block)
    return len(blocks)


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def _gain(norm: nn.Module) -> torch.Tensor:
    return (1.0 + norm.weight.detach().float()).contiguous()


def summary(model: nn.Module) -> dict:
    """How many projections read the file's blocks, and whether the output head does."""
    quantized = sum(isinstance(m, GGUFLinear) for m in model.modules())
    dense = sum(isinstance(m, nn.Linear) for m in model.modules())
    from .kernels import backend

    return {"projections": f"{quantized} of {quantized + dense}",
            "output_head": isinstance(model.model.embed_tokens, GGUFEmbedding),
            "kernels": backend() if quantized else None}
