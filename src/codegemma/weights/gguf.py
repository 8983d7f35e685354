"""GGUF files (llama.cpp, Ollama): config from metadata, tensors through a declarative name map, tokenizer.

Read by our own compact reader (gguf_file.py); the `gguf` package's dequantization covers the formats
our kernels do not. llama.cpp's converter folds Gemma's "+1"
into every norm weight; it is undone here, exactly once, by `_unfold_norm`.
"""

from __future__ import annotations

import functools
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import FULL, SLIDING, GemmaConfig
from ..model import GemmaForCausalLM
from ..spm import CONTROL, UNKNOWN, SpmEncoder
from ..tokenizer import NAMED_SPECIALS, Pieces, Tokenizer, raw_piece_bytes
from .gguf_file import GGUFFile, GGUFFormatError, StringArray
from .hf import CheckpointError, fill_from
from .quants import dequantize_blocks

SUPPORTED_ARCHS = ("gemma", "gemma2", "gemma3")

# GGUF name -> HF name; "{i}" is the layer. Gemma 1's ffn_norm is the MLP's input norm, which HF
# calls post_attention_layernorm; in Gemma 2/3 HF has a norm of that name after attention instead.
_COMMON = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
}
NAME_MAPS = {
    "gemma": {**_COMMON, "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight"},
    "gemma2": {**_COMMON,
               "blk.{i}.post_attention_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
               "blk.{i}.ffn_norm.weight": "model.layers.{i}.pre_feedforward_layernorm.weight",
               "blk.{i}.post_ffw_norm.weight": "model.layers.{i}.post_feedforward_layernorm.weight"},
}
NAME_MAPS["gemma3"] = {**NAME_MAPS["gemma2"],
                       "blk.{i}.attn_q_norm.weight": "model.layers.{i}.self_attn.q_norm.weight",
                       "blk.{i}.attn_k_norm.weight": "model.layers.{i}.self_attn.k_norm.weight"}


def _unfold_norm(t: torch.Tensor) -> torch.Tensor:
    """llama.cpp stores Gemma norm weights as 1 + w; our RMSNorm (like HF) holds w."""
    return t - 1.0


TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"norm.weight": _unfold_norm}


class GGUFError(CheckpointError):
    """A GGUF file that cannot be loaded; the message names the file, key or tensor at fault."""


def _patterns(arch: str) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for gguf_name, hf_name in NAME_MAPS[arch].items():
        regex = "^" + re.escape(gguf_name).replace(r"\{i\}", r"(?P<i>\d+)") + "$"
        out.append((re.compile(regex), hf_name))
    return out


def hf_name(arch: str, name: str) -> str | None:
    for regex, target in _patterns(arch):
        m = regex.match(name)
        if m:
            return target.format(**m.groupdict())
    return None


@functools.cache
def open_gguf(path: str | Path) -> GGUFFile:
    path = Path(path)
    try:
        return GGUFFile(path)
    except (GGUFFormatError, OSError, ValueError, struct.error) as exc:
        raise GGUFError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from exc


def metadata(reader: GGUFFile) -> dict[str, Any]:
    return reader.metadata


def config_from_metadata(meta: dict[str, Any], vocab_size: int, source: str) -> GemmaConfig:
    """GemmaConfig from GGUF keys, with llama.cpp's defaults where the file is silent."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise GGUFError(f"{source}: unsupported architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHS)}")

    def key(name: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{name}", default)
        if value is None:
            raise GGUFError(f"{source}: metadata key {arch}.{name} is missing")
        return value

    hidden, heads, layers = int(key("embedding_length")), int(key("attention.head_count")), int(key("block_count"))
    head_dim = int(key("attention.key_length", hidden // heads))
    values: dict[str, Any] = dict(
        model_type=arch, vocab_size=vocab_size, hidden_size=hidden, intermediate_size=int(key("feed_forward_length")),
        num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=int(key("attention.head_count_kv", heads)), head_dim=head_dim,
        max_position_embeddings=int(key("context_length", 8192)),
        rms_norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(key("rope.freq_base", 10000.0)))
    if arch == "gemma":
        return GemmaConfig(**values)
    # llama.cpp: queries scaled by 1/sqrt(hidden/heads) for the 27B models, else by 1/sqrt(head_dim).
    big = layers == (46 if arch == "gemma2" else 62)
    values["query_pre_attn_scalar"] = float(hidden // heads if big else head_dim)
    values["sliding_window"] = int(key("attention.sliding_window", 4096))
    if arch == "gemma2":
        values["attn_logit_softcapping"] = float(key("attn_logit_softcapping", 50.0))
        values["final_logit_softcapping"] = float(key("final_logit_softcapping", 30.0))
        pattern = 2
    else:  # gemma3: llama.cpp's defaults are a 6-layer pattern and a local RoPE base of 10000
        pattern = int(meta.get("gemma3.attention.sliding_window_pattern", 6))
        values["rope_local_base_freq"] = float(meta.get("gemma3.rope.freq_base_swa", 10000.0))
        kind = meta.get("gemma3.rope.scaling.type", "none")
        if kind == "linear":
            values["rope_scaling_factor"] = float(meta.get("gemma3.rope.scaling.factor", 1.0))
        elif kind not in ("none", None):
            raise GGUFError(f"{source}: RoPE scaling {kind!r} is not supported (only linear)")
    values["layer_types"] = tuple(SLIDING if (i + 1) % pattern else FULL for i in range(layers))
    return GemmaConfig(**values)


def raw_bytes(tensor) -> torch.Tensor:
    """A GGUF tensor's bytes as a flat uint8 tensor over the read-only memory map (never written to)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(tensor.data).view(np.uint8).reshape(-1))


def dequantize(tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A GGUF tensor in PyTorch's (out, in) layout: our kernels, else the gguf package's. Values are
    computed in float32; `dtype` is how our kernels store them."""
    shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists dimensions fastest-first
    kind = tensor.tensor_type.name
    raw = raw_bytes(tensor)
    if kind in ("F32", "F16", "BF16"):
        stored = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[kind]
        return raw.view(stored).float().reshape(shape)  # .float() copies out of the map
    values = dequantize_blocks(raw, kind, int(np.prod(shape)), dtype)
    if values is None:  # a format our kernels do not read: the gguf package's dequantization
        from gguf.constants import GGMLQuantizationType
        from gguf.quants import dequantize as gguf_dequantize

        kind = GGMLQuantizationType(int(tensor.tensor_type))
        values = torch.from_numpy(np.array(gguf_dequantize(tensor.data, kind), dtype=np.float32))
    return values.reshape(shape)


def iter_tensors(reader, arch: str, source: str, keep: Callable[[str, Any], bool] = lambda name, t: False,
                 dtype: torch.dtype = torch.float32) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, tensor) for every tensor except those `keep` takes as they are: float32, or `dtype`
    (the model's) for quantized tensors, converted chunk by chunk."""
    for tensor in reader.tensors:
        name = hf_name(arch, tensor.name)
        if name is None:
            if tensor.name == "output.weight":
                yield "lm_head.weight", dequantize(tensor)
                continue
            raise GGUFError(f"{source}: unexpected tensor {tensor.name} for architecture {arch}")
        if keep(name, tensor):
            continue
        transform = next((fn for suffix, fn in TRANSFORMS.items() if name.endswith(suffix)), None)
        try:
            t = dequantize(tensor, torch.float32 if transform else dtype)  # transforms work in float32
        except Exception as exc:
            raise GGUFError(f"{source}: cannot dequantize {tensor.name} ({tensor.tensor_type.name}: {exc})") from exc
        yield name, transform(t) if transform else t


def _keeper(model: GemmaForCausalLM, dtype: torch.dtype) -> Callable[[str, Any], bool]:
    """Swaps in the projections and the embedding whose block format the kernels read, as views of the
    file's memory map (quantized.GGUFLinear, GGUFEmbedding); the rest is dequantized."""
    from ..kernels import GGUFMatrix, supported
    from ..quantized import GGUFEmbedding, GGUFLinear

    def keep(name: str, tensor) -> bool:
        kind = tensor.tensor_type.name
        embedding = name == "model.embed_tokens.weight"
        if len(tensor.shape) != 2 or not (embedding or name.endswith("_proj.weight")):
            return False
        rows, cols = int(tensor.shape[1]), int(tensor.shape[0])
        if not supported(kind, cols):
            return False
        matrix = GGUFMatrix(raw_bytes(tensor), kind, rows, cols)
        path = name.removesuffix(".weight").split(".")
        parent, attr = model.get_submodule(".".join(path[:-1])), path[-1]
        old = getattr(parent, attr)
        shape = (old.num_embeddings, old.embedding_dim) if embedding else (old.out_features, old.in_features)
        if shape != (rows, cols):
            raise GGUFError(f"{tensor.name}: shape {(rows, cols)} where the config gives {shape}")
        setattr(parent, attr, GGUFEmbedding(matrix, dtype) if embedding else GGUFLinear(matrix))
        return True

    return keep


def tokenizer_from_metadata(meta: dict[str, Any], source: str) -> Tokenizer:
    """The llama.cpp SPM tokenizer from tokenizer.ggml.*; control/unknown tokens (and the FIM and turn
    tokens) are parsed from text only with parse_special."""
    model = meta.get("tokenizer.ggml.model")
    if model != "llama":
        raise GGUFError(f"{source}: tokenizer model {model!r} is not supported (Gemma uses 'llama', SentencePiece)")
    try:
        tokens = meta["tokenizer.ggml.tokens"]
        scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
        types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    except KeyError as exc:
        raise GGUFError(f"{source}: metadata key {exc.args[0]} is missing") from exc
    if not (len(tokens) == len(scores) == len(types)):
        raise GGUFError(f"{source}: tokenizer arrays differ in length")
    raw = Pieces(tokens.raws()) if isinstance(tokens, StringArray) else \
        Pieces(t.encode("utf-8", "surrogateescape") for t in tokens)  # the file's bytes of each piece
    space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    encoder = SpmEncoder(raw, scores, types, add_space_prefix=space_prefix)
    named = {name.encode() for name in NAMED_SPECIALS}
    specials = {tokens[i]: i for i, (b, k) in enumerate(zip(raw, types)) if k in (CONTROL, UNKNOWN) or b in named}
    kept = set(specials.values())  # special pieces show as their text
    pieces = (b if i in kept else raw_piece_bytes(b) for i, b in enumerate(raw))
    fim = {"tokenizer.ggml.prefix_token_id": "<|fim_prefix|>", "tokenizer.ggml.middle_token_id": "<|fim_middle|>",
           "tokenizer.ggml.suffix_token_id": "<|fim_suffix|>"}
    for key, name in fim.items():  # files that name FIM ids explicitly
        if key in meta and 0 <= int(meta[key]) < len(tokens):
            specials.setdefault(name, int(meta[key]))
    return Tokenizer(pieces, specials, encoder.encode, bos_id=int(meta.get("tokenizer.ggml.bos_token_id", 2)),
                     eos_id=int(meta.get("tokenizer.ggml.eos_token_id", 1)),
                     pad_id=int(meta.get("tokenizer.ggml.padding_token_id", 0)), source=source)


def load_gguf(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              keep_quantized: bool = False) -> tuple[GemmaForCausalLM, Tokenizer]:
    """Model and tokenizer from a GGUF file: weights dequantized to `dtype`, or with keep_quantized (CPU)
    the projections and the embedding read in place from the memory-mapped file by the quantized
    kernels (quantized.py), the rest (norms) dequantized."""
    path = Path(path)
    reader = open_gguf(path)
    meta = metadata(reader)
    source = str(path)
    embed = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embed is None:
        raise GGUFError(f"{source}: tensor token_embd.weight is missing")
    config = config_from_metadata(meta, int(embed.shape[1]), source)
    tokenizer = tokenizer_from_metadata(meta, source)
    with torch.device("meta"):
        model = GemmaForCausalLM(config)
    model = model.to(dtype)
    if keep_quantized and torch.device(device).type != "cpu":
        raise GGUFError("the quantized kernels run on CPU; load for CUDA with keep_quantized=False")
    keep = _keeper(model, dtype) if keep_quantized else (lambda name, t: False)
    tensors = iter_tensors(reader, config.model_type, source, keep, dtype=dtype)
    if keep_quantized:
        tensors = iter(list(tensors))  # swaps the kept tensors in before parameters are allocated
    _materialize(model, device)
    fill_from(model, tensors, source=source)
    if keep_quantized:
        from ..kernels import backend

        if backend() == "cpp":
            from ..quantized import fuse_blocks, pack_head

            model.use_fused_ops()
            fuse_blocks(model)
            pack_head(model, release=reader.release)  # the file's pages of the head leave memory as it is packed
    return model.eval(), tokenizer


def _materialize(model: torch.nn.Module, device: torch.device | str) -> None:
    """Allocates the parameters still on the meta device (unlike to_empty, leaves real buffers alone)."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.is_meta:
                setattr(module, name, torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device),
                                                         requires_grad=p.requires_grad))
