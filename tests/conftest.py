"""Shared fixtures: a SentencePiece BPE tokenizer with CodeGemma's special ids, and tiny real checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from codegemma.testing import train_sentencepiece

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_model():
    """The embedded default model (Gemma 3 270M, Q4_K_M) as `load("default")` gives it (the file's blocks read
    by the quantized kernels, bfloat16 activations), loaded once per test run."""
    import codegemma

    return codegemma.load("default")

@pytest.fixture(scope="session")
def sp_folder(tmp_path_factory) -> Path:
    """A folder with tokenizer.model (SentencePiece) only."""
    folder = tmp_path_factory.mktemp("sp")
    train_sentencepiece(folder)
    return folder


@pytest.fixture(scope="session")
def tok_folder(tmp_path_factory, sp_folder) -> Path:
    """tokenizer.model plus the tokenizer.json transformers derives from it."""
    from transformers import GemmaTokenizer

    folder = tmp_path_factory.mktemp("tok")
    shutil.copy(sp_folder / "tokenizer.model", folder / "tokenizer.model")
    GemmaTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    return folder


def hf_reference_model(config: dict, seed: int = 0):
    """A transformers GemmaForCausalLM with random weights, norms too (so the 1 + w convention matters)."""
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    model = GemmaForCausalLM(GemmaConfig(**config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.5)
    return model


def write_checkpoint(folder: Path, config: dict, tok_folder: Path | None = None, *, shard_kb: int = 40,
                     seed: int = 0) -> Path:
    """Writes real sharded safetensors with an index and a config.json that says hidden_act "gelu"."""
    model = hf_reference_model(config, seed)
    model.save_pretrained(str(folder), max_shard_size=f"{shard_kb}KB")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_act"] = "gelu"  # as in the original CodeGemma releases; the model must still use tanh-GELU
    (folder / "config.json").write_text(json.dumps(cfg))
    if tok_folder is not None:
        for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
            if (tok_folder / name).exists():
                shutil.copy(tok_folder / name, folder / name)
    return folder


TINY_CONFIGS = {
    "mqa": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=256),
    "gqa": dict(vocab_size=1024, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=256),
    "mha": dict(vocab_size=1024, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, head_dim=16, max_position_embeddings=256),
    # head_dim (32) != hidden / heads (48 / 4 = 12), like the 7B (3072 / 16 = 192 != 256)
    "odd-head-dim": dict(vocab_size=1024, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, head_dim=32, max_position_embeddings=256),
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tok_folder) -> Path:
    """An MQA CodeGemma-shaped checkpoint with its tokenizer: the model most tests load."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY_CONFIGS["mqa"], tok_folder)
