"""The Gemma decoder in PyTorch (Gemma 1 = CodeGemma, plus Gemma 2 and 3 text), module names as in HF checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import GemmaConfig


class RMSNorm(nn.Module):
    """Gemma RMSNorm: float32 math and a (1 + w) gain; weights are stored as offsets from 1.

    Source: google/gemma_pytorch `RMSNorm(add_unit_offset=True)`; transformers' GemmaRMSNorm.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.fused = False  # codegemma.kernels' one-op version (GemmaForCausalLM.use_fused_ops)
        self._gain: tuple[int, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and not x.requires_grad:
            if self._gain is None or self._gain[0] != self.weight._version:
                self._gain = (self.weight._version, (1.0 + self.weight.detach().float()).contiguous())
            return torch.ops.codegemma.rms_norm(x, self._gain[1], self.eps)
        out = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)  # x * rsqrt(mean(x^2) + eps), bit for bit
        return (out * (1.0 + self.weight.float())).type_as(x)


_DIRECT: dict[type, type] = {}


def _call_forward_directly(module: nn.Module) -> None:
    """Makes calling `module` call its forward straight away, without nn.Module.__call__'s hook machinery
    (some 200 calls a decoded token, about 0.8 ms of a 16 ms step on one thread). For an inference model
    that nothing hooks into (the fused-ops model: no FSDP, no forward hooks); a module with hooks keeps them."""
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks:
        return
    cls = type(module)
    if cls in _DIRECT.values():
        return
    if cls not in _DIRECT:
        _DIRECT[cls] = type(cls.__name__, (cls,), {"__call__": cls.forward, "__module__": cls.__module__,
                                                   "__qualname__": cls.__qualname__})
    module.__class__ = _DIRECT[cls]


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight.T. A single row of 16-bit floats is computed as two: BLAS gives one row a matrix-vector
    kernel whose rounding differs from the matrix-matrix kernel every larger batch gets (measured: rows of
    2 to 64 agree bit for bit, one row does not), so a sequence's result does not depend on how many
    others share its decoding batch. Free in bfloat16, where two rows take no longer than one."""
    if x.dtype in (torch.bfloat16, torch.float16) and x.numel() == x.shape[-1] and not torch.is_grad_enabled():
        row = x.reshape(1, -1)
        return F.linear(torch.cat([row, row]), weight)[:1].reshape(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight)


def project(x: torch.Tensor, *layers: nn.Module) -> list[torch.Tensor]:
    """x through several projections of the same input (q/k/v, gate/up): one kernel call where they all
    read a GGUF file's blocks (quantized.GGUFLinear.fused), else one after the other."""
    fused = getattr(layers[0], "fused", None)
    out = fused(x, layers) if fused is not None else None
    return [layer(x) for layer in layers] if out is None else out


class Linear(nn.Linear):
    """A bias-free projection computed by `linear`."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """cos/sin tables for split-halves RoPE over the full head_dim, computed in float32. positions: (B, T)."""
    even = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float()
    inv_freq = 1.0 / (base ** (even / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # (B, 1, T, hd)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates (B, H, T, hd) by the split-halves layout (rotate_half), not the interleaved one."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


ROPE_CHUNK = 256  # positions of a RoPE table computed together (GemmaForCausalLM._rope_table)


class KVCache(nn.Module):
    """Keys and values of one layer: k, v of shape (B, n_kv, max_len, hd); slot s holds the s-th token fed.

    Keys are stored rotated (RoPE applied). A cache made with `empty=True` is not zeroed: only the slots
    a row fills are ever read, and on CPU the pages nobody writes are never committed.
    """

    def __init__(self, batch: int, n_kv: int, max_len: int, head_dim: int, *, device: torch.device,
                 dtype: torch.dtype, empty: bool = False) -> None:
        super().__init__()
        shape = (batch, n_kv, max_len, head_dim)
        make = torch.empty if empty else torch.zeros
        self.register_buffer("k", make(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", make(shape, device=device, dtype=dtype), persistent=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor,
               row: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes (B, n_kv, T, hd) at slots [start, start+T) of every row (or of row `row`, B = 1);
        returns those rows' slots [0, start+T)."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; {end} requested")
        rows = slice(None) if row is None else slice(row, row + 1)
        self.k[rows, :, start:end] = k
        self.v[rows, :, start:end] = v
        return self.k[rows, :, :end], self.v[rows, :, :end]

    def write_rows(self, at: Rows, k: torch.Tensor, v: torch.Tensor) -> None:
        """Writes (B, n_kv, 1, hd): token i at slot at.positions[i] of row at.rows[i], all in one indexed copy."""
        rows, slots = at.index(self.k.device)
        if at.positions and max(at.positions) >= self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; slot {max(at.positions)} requested")
        self.k[rows, :, slots] = k[:, :, 0]
        self.v[rows, :, slots] = v[:, :, 0]


@dataclass(frozen=True)
class Rows:
    """One token for each of several sequences: sequence i lives in cache row rows[i], at slot positions[i]
    (its tokens fill slots 0.. in order, so a slot is also the RoPE position)."""

    rows: tuple[int, ...]
    positions: tuple[int, ...]

    def index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """rows and positions as index tensors, made once per step (not once per layer)."""
        cached = self.__dict__.get("_index")
        if cached is None or cached[0].device != device:
            cached = (torch.tensor(self.rows, device=device), torch.tensor(self.positions, device=device))
            object.__setattr__(self, "_index", cached)
        return cached


class Attention(nn.Module):
    def __init__(self, config: GemmaConfig, layer: int) -> None:
        super().__init__()
        c = config
        self.n_heads, self.n_kv, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.scale = c.attn_scale  # head_dim^-0.5 (Gemma 1) or query_pre_attn_scalar^-0.5 (Gemma 2/3)
        self.softcap = c.attn_logit_softcapping
        self.q_proj = Linear(c.hidden_size, c.num_attention_heads * c.head_dim)
        self.k_proj = Linear(c.hidden_size, c.num_key_value_heads * c.head_dim)
        self.v_proj = Linear(c.hidden_size, c.num_key_value_heads * c.head_dim)
        self.o_proj = Linear(c.num_attention_heads * c.head_dim, c.hidden_size)
        if c.has_qk_norm:
            self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps)
            self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps)
        self.cache: KVCache | None = None
        self.fused = False  # RoPE by codegemma.kernels' one op (GemmaForCausalLM.use_fused_ops)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | list,
                start: int | Rows, cache: KVCache | None = None, row: int | None = None) -> torch.Tensor:
        """Tokens at slots [start, start+T) of every row of `cache` (default: the attached one), or of row
        `row` only; with `start` a Rows, one token per sequence, each attending its own row (mask: one
        per sequence, None where nothing is masked)."""
        B, T, _ = x.shape
        q, k, v = project(x, self.q_proj, self.k_proj, self.v_proj)
        q = q.view(B, T, self.n_heads, self.head_dim)  # (B, T, H, hd)
        k = k.view(B, T, self.n_kv, self.head_dim)  # (B, T, n_kv, hd)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # (B, n_kv, T, hd)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        rope = torch.ops.codegemma.rope if self.fused and not x.requires_grad else apply_rope
        q = rope(q.transpose(1, 2), cos, sin)  # (B, H, T, hd)
        k = rope(k.transpose(1, 2), cos, sin)  # (B, n_kv, T, hd)
        cache = self.cache if cache is None else cache
        if isinstance(start, Rows):
            if self.fused and not q.requires_grad:  # every row's keys written at once, then all rows attend
                cache.write_rows(start, k, v)
                y = torch.ops.codegemma.attend_rows(q, cache.k, cache.v, list(start.rows),
                                                    [p + 1 for p in start.positions], [m or 0 for m in mask],
                                                    self.scale, self.softcap or 0.0)
            else:
                y = torch.cat([self._attend(q[i:i + 1], *cache.update(p, k[i:i + 1], v[i:i + 1], r), mask[i])
                               for i, (r, p) in enumerate(zip(start.rows, start.positions))])
            return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
        if cache is not None:
            k, v = cache.update(start, k, v, row)  # (B, n_kv, S, hd)
        y = self._attend(q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | int | None) -> torch.Tensor:
        """A single query with an int mask (the first key it may see: a sliding window) or none goes to the
        fused ops' attend1 (use_fused_ops); otherwise PyTorch's fused attention, except for a single float32
        query (where _grouped's two matrix products are faster) and Gemma 2's soft-capping (which it lacks)."""
        if self.fused and q.shape[2] == 1 and not isinstance(mask, torch.Tensor) and not q.requires_grad:
            return torch.ops.codegemma.attend1(q, k, v, self.scale, mask or 0, self.softcap or 0.0)
        if isinstance(mask, int):  # the first key a single query sees, as a mask
            mask = (torch.arange(k.shape[2], device=k.device) >= mask)[None, None, None]
        if self.softcap is None and (q.shape[2] > 1 or q.dtype != torch.float32):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                                  enable_gqa=self.n_kv != self.n_heads)
        return self._grouped(q, k, v, mask)

    def _grouped(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention with the query heads of each KV head stacked, so MQA/GQA need no repeated K/V.

        Faster than the fused CPU kernel for a single query; Gemma 2's soft-cap, cap * tanh(s / cap),
        is applied to the scores before the mask and softmax.
        """
        B, H, T, hd = q.shape
        groups = H // self.n_kv
        qg = q.reshape(B, self.n_kv, groups * T, hd)  # heads of a group share K/V
        scores = (qg @ k.transpose(-1, -2)) * self.scale  # (B, n_kv, groups*T, S)
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        scores = scores.view(B, self.n_kv, groups, T, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, :, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return (probs.view(B, self.n_kv, groups * T, -1) @ v).view(B, H, T, hd)


class MLP(nn.Module):
    """GeGLU with the tanh approximation: down(gelu_tanh(gate(x)) * up(x)).

    The original configs say hidden_act="gelu" (exact), but the models were trained with tanh-GELU.
    """

    def __init__(self, config: GemmaConfig) -> None:
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = project(x, self.gate_proj, self.up_proj)
        if torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
            return self.down_proj(F.gelu(gate, approximate="tanh") * up)
        # in place where nothing needs the inputs again: the same kernels and bits, two (T, intermediate)
        # temporaries fewer at a long prefill's peak
        return self.down_proj(torch._C._nn.gelu_(gate, approximate="tanh").mul_(up))


class Block(nn.Module):
    """Pre-norm block. Gemma 1: two norms. Gemma 2/3: also a norm after attention and after the MLP."""

    def __init__(self, config: GemmaConfig, layer: int) -> None:
        super().__init__()
        eps = config.rms_norm_eps
        self.self_attn = Attention(config, layer)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps)
        self.sandwich = config.has_post_norms
        if self.sandwich:
            self.pre_feedforward_layernorm = RMSNorm(config.hidden_size, eps)
            self.post_feedforward_layernorm = RMSNorm(config.hidden_size, eps)
        self.step = None  # this forward for single tokens as one kernel call (quantized.fuse_blocks)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | list,
                start: int | Rows, cache: KVCache | None = None, row: int | None = None) -> torch.Tensor:
        cache = self.self_attn.cache if cache is None else cache
        if self.step is not None and x.shape[1] == 1 and cache is not None and not isinstance(mask, torch.Tensor) \
                and not x.requires_grad:
            return self.step(x, cos, sin, mask, start, cache, row)
        h = self.self_attn(self.input_layernorm(x), cos, sin, mask, start, cache, row)
        if not self.sandwich:  # Gemma 1: post_attention_layernorm is the MLP's input norm
            x = x + h
            return x + self.mlp(self.post_attention_layernorm(x))
        x = x + self.post_attention_layernorm(h)
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class GemmaModel(nn.Module):
    def __init__(self, config: GemmaConfig) -> None:
        super().__init__()
        weight = torch.empty(config.vocab_size, config.hidden_size)
        if not weight.is_meta:  # (on the meta device, as loaders build, normal_ would import all of torch._dynamo)
            nn.init.normal_(weight)  # nn.Embedding's own initialisation
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, _weight=weight)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class GemmaForCausalLM(nn.Module):
    """Parameters and forward only; tokenizers, sampling and file loading live elsewhere."""

    def __init__(self, config: GemmaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = GemmaModel(config)  # the output head is model.embed_tokens (tied)
        self._rope: dict[tuple[float, float], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    @property
    def dtype(self) -> torch.dtype:  # of activations (the embedding may be a GGUF file's blocks)
        return self.model.norm.weight.dtype

    def use_fused_ops(self) -> None:
        """Norms and RoPE as single C++ ops (codegemma.kernels, which must have built): float32 inside, one
        rounding, hundreds fewer small PyTorch operations per decoded token. For inference (the GGUF loader
        turns it on with the quantized kernels); inputs that need gradients still take the plain path."""
        for m in self.modules():
            if isinstance(m, (RMSNorm, Attention)):
                m.fused = True
            _call_forward_directly(m)

    def rows_independent(self) -> bool:
        """Whether each row of a pass gets the bits it gets alone, which exact speculative decoding needs: true
        where every projection and the output head are GGUF kernels (quantized.py), whose rows never share
        an accumulator (attention in decode_rows is per row anyway). Dense GEMMs leave it to the BLAS."""
        projections = [m for m in self.modules() if isinstance(m, nn.Linear) or hasattr(m, "fused")]
        return bool(projections) and all(hasattr(m, "fused") for m in projections) and hasattr(
            self.model.embed_tokens, "logits")

    def make_cache(self, batch: int, max_len: int, *, empty: bool = False) -> list[KVCache]:
        """A KV cache per layer (batch rows of max_len slots) on the model's device and dtype, not attached:
        pass it to forward(cache=...) and decode_rows."""
        c = self.config
        return [KVCache(batch, c.num_key_value_heads, max_len, c.head_dim, device=self.device, dtype=self.dtype,
                        empty=empty) for _ in self.model.layers]

    def setup_cache(self, batch: int, max_len: int) -> None:
        """Attaches a KV cache of max_len slots to every layer, on the model's device and dtype."""
        for block, cache in zip(self.model.layers, self.make_cache(batch, max_len)):
            block.self_attn.cache = cache

    def clear_cache(self) -> None:
        for block in self.model.layers:
            block.self_attn.cache = None

    def forward(self, input_ids: torch.Tensor, *, start: int = 0, positions: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None, last: int | None = 1, cache: list[KVCache] | None = None,
                row: int | None = None) -> torch.Tensor | None:
        """Runs (B, T) tokens placed at cache slots [start, start+T).

        Args:
            cache: per-layer caches (make_cache); default: the attached ones.
            row: with `cache`, the one row (B = 1) these tokens belong to.
            positions: (B, T) RoPE positions; defaults to the slots (no padding).
            key_valid: (B, start+T) False where a slot holds padding that no query may see.
            last: logits for the last `last` positions only (None: every position; 0: none, only
                fill the cache). Prefill never needs the full vocabulary for every prompt token.

        Returns:
            float32 logits (B, last, vocab), or None when last == 0.
        """
        c = self.config
        B, T = input_ids.shape
        if positions is None:
            positions = torch.arange(start, start + T, device=input_ids.device).expand(B, T)
        x = self.model.embed_tokens(input_ids)  # (B, T, D)
        x = x * torch.tensor(c.embed_scale, dtype=x.dtype)  # sqrt(hidden) cast to the activation dtype first
        if T == 1 and (key_valid is None or bool(key_valid[:, :start + 1].all())):  # one query a row, no padding:
            # the first key it may see, as decode_rows gives it (so both paths compute the same)
            masks = {False: None, True: self._window(start)}
        else:
            masks = _attention_masks(c, B, T, start, key_valid, x.device)
        tables = self._rope_tables(positions, x.dtype)
        for i, block in enumerate(self.model.layers):
            x = block(x, *tables[self._rope_key(i)], masks[c.is_sliding(i)], start,
                      None if cache is None else cache[i], row)
        if last == 0:
            return None
        if last is not None:
            x = x[:, -last:]
        return self.output(x)

    def decode_rows(self, tokens: list[int], rows: Rows, cache: list[KVCache]) -> torch.Tensor:
        """One decoding step for several sequences in one pass (continuous batching): token i goes to row
        rows.rows[i] at slot rows.positions[i] and attends that row's slots up to it. Each row's result
        is the one it gets decoded alone (attention runs per row over its own length). float32 logits (B, vocab)."""
        c = self.config
        device = self.device
        ids = torch.tensor(tokens, device=device)[:, None]  # (B, 1)
        x = self.model.embed_tokens(ids)
        x = x * torch.tensor(c.embed_scale, dtype=x.dtype)
        tables = self._rope_tables(torch.tensor(rows.positions, device=device)[:, None], x.dtype)
        sliding = [self._window(p) for p in rows.positions]
        full = [None] * len(tokens)
        for i, block in enumerate(self.model.layers):
            x = block(x, *tables[self._rope_key(i)], sliding if c.is_sliding(i) else full, rows, cache[i])
        return self.output(x)[:, -1]

    def _window(self, slot: int) -> int | None:
        """For a single query at `slot` of a sliding-window layer: the first key it may see (None: all)."""
        window = self.config.sliding_window
        return slot - window + 1 if window and slot >= window else None

    def move_slots(self, cache: list[KVCache], row: int, src: int, dst: int, n: int) -> None:
        """Moves the keys and values of slots [src, src+n) of one row to [dst, dst+n), the keys re-rotated
        by dst - src positions (rotations compose), as llama.cpp's KV shift for --cache-reuse. The moved
        keys keep what they attended at their old place: close to, not equal to, a fresh prefill."""
        delta = torch.full((1, n), dst - src, device=self.device)
        tables = self._rope_tables(delta, torch.float32)
        for i, kv in enumerate(cache):
            keys = kv.k[row:row + 1, :, src:src + n].float()
            cos, sin = tables[self._rope_key(i)]
            kv.k[row:row + 1, :, dst:dst + n] = apply_rope(keys, cos, sin).to(kv.k.dtype)
            kv.v[row:row + 1, :, dst:dst + n] = kv.v[row:row + 1, :, src:src + n].clone()

    def _rope_key(self, layer: int) -> tuple[float, float]:
        return self.config.rope_base(layer), self.config.rope_scale(layer)

    def _rope_tables(self, positions: torch.Tensor, dtype: torch.dtype) -> dict[tuple[float, float], tuple]:
        """cos/sin tables per distinct (RoPE base, position scale) of the layers, for (B, T) positions: rows
        of a table computed once for positions 0..n (grown by doubling), the same values computed alone."""
        tables = {}
        whole = not positions.is_floating_point() and positions.numel() and int(positions.min()) >= 0
        for i in range(self.config.num_hidden_layers):
            base, scale = key = self._rope_key(i)
            if key in tables:
                continue
            if whole:
                cos, sin = self._rope_table(key, dtype, int(positions.max()) + 1)
                tables[key] = cos[positions][:, None], sin[positions][:, None]
            else:
                pos = positions if scale == 1.0 else positions.float() / scale
                tables[key] = rope_cos_sin(pos, self.config.head_dim, base, dtype)
        return tables

    def _rope_table(self, key: tuple[float, float], dtype: torch.dtype, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin rows for positions 0..n-1 (at least), grown ROPE_CHUNK positions at a time. Each chunk is
        computed alone, by the same vectorized code whatever the table's length (a table computed in one
        piece has values that depend on its length, through the cos/sin kernels' tails and thread splits),
        so a position's values never depend on how far earlier requests grew it; and the table holds only
        the positions in use (4096 positions of a 256-wide head in bfloat16 are 4 MB a RoPE base)."""
        cached = self._rope.get((key, dtype))
        have = 0 if cached is None or cached[0].device != self.device else cached[0].shape[0]
        if have >= n:
            return cached
        base, scale = key
        parts = [] if have == 0 else [cached]
        for first in range(have, n, ROPE_CHUNK):
            pos = torch.arange(first, first + ROPE_CHUNK, device=self.device)[None]
            pos = pos if scale == 1.0 else pos.float() / scale
            cos, sin = rope_cos_sin(pos, self.config.head_dim, base, dtype)  # (1, 1, ROPE_CHUNK, hd)
            parts.append((cos[0, 0], sin[0, 0]))
        cached = self._rope[(key, dtype)] = (torch.cat([c for c, _ in parts]), torch.cat([s for _, s in parts]))
        return cached

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and the tied output head, float32 logits, Gemma 2's final soft-cap if configured."""
        x = self.model.norm(x)
        head = self.model.embed_tokens
        logits = head.logits(x) if hasattr(head, "logits") else linear(x, head.weight).float()
        cap = self.config.final_logit_softcapping
        return torch.tanh(logits / cap) * cap if cap else logits


def _attention_masks(config: GemmaConfig, B: int, T: int, start: int, key_valid: torch.Tensor | None,
                     device: torch.device) -> dict[bool, torch.Tensor]:
    """Boolean masks (B, 1, T, S), True = may attend, for full (False) and sliding (True) layers."""
    S = start + T
    q = torch.arange(start, S, device=device)[:, None]  # (T, 1) query slots
    k = torch.arange(S, device=device)[None, :]  # (1, S) key slots
    causal = k <= q
    valid = torch.ones(B, S, dtype=torch.bool, device=device) if key_valid is None else key_valid[:, :S]
    masks = {}
    for sliding in (False, True):
        allowed = causal & (q - k < config.sliding_window) if sliding and config.sliding_window else causal
        m = allowed[None] & valid[:, None, :]  # (B, T, S)
        m = m | (k == q)[None]  # a padding query sees itself, so no softmax row is empty
        masks[sliding] = m[:, None]  # (B, 1, T, S)
    return masks
