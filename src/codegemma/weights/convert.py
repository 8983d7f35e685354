"""`codegemma convert`: Hugging Face folder <-> GGUF, written with the `gguf` package so llama.cpp loads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import GemmaConfig
from ..model import GemmaForCausalLM
from ..spm import BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED
from .gguf import NAME_MAPS, load_gguf, metadata, open_gguf
from .hf import CheckpointError, load_hf_folder, save_hf_folder

OUT_TYPES = ("f32", "f16", "bf16", "q8_0")


def _gguf_names(arch: str) -> dict[str, str]:
    """HF name -> GGUF name (the inverse of the declarative map), expanded per layer later."""
    return {hf: gg for gg, hf in NAME_MAPS[arch].items()}


def _gguf_tensor_name(arch: str, hf_name: str) -> str:
    parts = hf_name.split(".")
    if len(parts) > 3 and parts[1] == "layers":
        layer = parts[2]
        key = ".".join(parts[:2] + ["{i}"] + parts[3:])
        return _gguf_names(arch)[key].replace("{i}", layer)
    return _gguf_names(arch)[hf_name]


def _vocab_from_sentencepiece(path: Path) -> tuple[list[str], list[float], list[int]]:
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(path.read_bytes())
    kinds = pb.ModelProto.SentencePiece
    to_gguf = {kinds.NORMAL: NORMAL, kinds.UNKNOWN: UNKNOWN, kinds.CONTROL: CONTROL,
               kinds.USER_DEFINED: USER_DEFINED, kinds.BYTE: BYTE, kinds.UNUSED: 5}
    return ([p.piece for p in proto.pieces], [p.score for p in proto.pieces], [to_gguf[p.type] for p in proto.pieces])


def _vocab_from_tokenizer_json(path: Path) -> tuple[list[str], list[float], list[int]]:
    """Scores from merge ranks: earlier merges score higher, which is the same merge order."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    size = max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))]) + 1
    tokens, scores, types = [f"[PAD{i}]" for i in range(size)], [0.0] * size, [NORMAL] * size
    for piece, i in vocab.items():
        tokens[i] = piece
        if piece.startswith("<0x") and len(piece) == 6:
            types[i] = BYTE
    for rank, merge in enumerate(spec["model"].get("merges", [])):
        joined = "".join(merge) if isinstance(merge, list) else merge.replace(" ", "", 1)
        if joined in vocab:
            scores[vocab[joined]] = max(scores[vocab[joined]] or -1e9, -float(rank))
    for t in spec.get("added_tokens", []):
        tokens[t["id"]] = t["content"]
        types[t["id"]] = CONTROL if t.get("special") else USER_DEFINED
    return tokens, scores, types


def hf_to_gguf(folder: str | Path, out: str | Path, *, out_type: str = "f32") -> Path:
    """Writes a GGUF that llama.cpp loads: metadata, tokenizer, and weights with norms folded to 1 + w."""
    import gguf

    folder, out = Path(folder), Path(out)
    if out_type not in OUT_TYPES:
        raise CheckpointError(f"unknown output type {out_type!r}; choose one of {', '.join(OUT_TYPES)}")
    model = load_hf_folder(folder)
    c = model.config
    if (folder / "tokenizer.model").is_file():
        tokens, scores, types = _vocab_from_sentencepiece(folder / "tokenizer.model")
    elif (folder / "tokenizer.json").is_file():
        tokens, scores, types = _vocab_from_tokenizer_json(folder / "tokenizer.json")
    else:
        raise CheckpointError(f"{folder}: no tokenizer.model or tokenizer.json to convert")
    w = gguf.GGUFWriter(str(out), c.model_type)
    _write_metadata(w, c, tokens, scores, types)
    for name, tensor in model.state_dict().items():
        data = tensor.float()
        if name.endswith("norm.weight"):
            data = data + 1.0  # llama.cpp's Gemma convention
        _add_tensor(w, _gguf_tensor_name(c.model_type, name), data, out_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def _write_metadata(w, c: GemmaConfig, tokens: list[str], scores: list[float], types: list[int]) -> None:
    arch = c.model_type
    w.add_name("codegemma-export")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_theta)
    if arch != "gemma":
        w.add_sliding_window(c.sliding_window)
    if c.rope_scaling_factor != 1.0:
        import gguf
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(c.rope_scaling_factor)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(c.bos_token_id)
    w.add_eos_token_id(c.eos_token_id)
    w.add_pad_token_id(c.pad_token_id)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    for key, name in (("prefix", "<|fim_prefix|>"), ("middle", "<|fim_middle|>"), ("suffix", "<|fim_suffix|>")):
        if name in tokens:
            w.add_uint32(f"tokenizer.ggml.{key}_token_id", tokens.index(name))


def _add_tensor(w, name: str, data: torch.Tensor, out_type: str) -> None:
    import gguf

    array = data.numpy().astype(np.float32)
    if array.ndim == 1 or out_type == "f32":
        w.add_tensor(name, array)
    elif out_type == "f16":
        w.add_tensor(name, array.astype(np.float16))
    elif out_type == "bf16":
        q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.BF16)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    else:
        q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)


def gguf_to_hf(path: str | Path, out: str | Path) -> Path:
    """Dequantizes a GGUF into a Hugging Face folder: config.json, safetensors, tokenizer.model."""
    path, out = Path(path), Path(out)
    model, _ = load_gguf(path)
    save_hf_folder(model, out)
    meta = metadata(open_gguf(path))
    write_sentencepiece(meta, out / "tokenizer.model")
    return out


def write_sentencepiece(meta: dict, path: Path) -> None:
    """A SentencePiece BPE model with the GGUF's pieces, scores and types (no normalisation, no dummy prefix)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    kinds = pb.ModelProto.SentencePiece
    to_sp = {NORMAL: kinds.NORMAL, UNKNOWN: kinds.UNKNOWN, CONTROL: kinds.CONTROL, USER_DEFINED: kinds.USER_DEFINED,
             BYTE: kinds.BYTE, 5: kinds.UNUSED}
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.split_digits = True
    proto.trainer_spec.vocab_size = len(meta["tokenizer.ggml.tokens"])
    proto.trainer_spec.bos_id = int(meta.get("tokenizer.ggml.bos_token_id", 2))
    proto.trainer_spec.eos_id = int(meta.get("tokenizer.ggml.eos_token_id", 1))
    proto.trainer_spec.pad_id = int(meta.get("tokenizer.ggml.padding_token_id", 0))
    proto.trainer_spec.unk_id = int(meta.get("tokenizer.ggml.unknown_token_id", 3))
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    for piece, score, kind in zip(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"],
                                  meta["tokenizer.ggml.token_type"]):
        p = proto.pieces.add()
        p.piece, p.score, p.type = piece, float(score), to_sp.get(int(kind), kinds.NORMAL)
    path.write_bytes(proto.SerializeToString())


__all__ = ["GemmaForCausalLM", "gguf_to_hf", "hf_to_gguf", "write_sentencepiece"]
