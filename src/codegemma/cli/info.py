"""`codegemma info`: a model's config, special token ids, FIM support and which weights the quantized kernels read."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from ..tokenizer import NAMED_SPECIALS
from .common import load_model, model_args

if TYPE_CHECKING:
    from ..api import CodeGemma

HELP = "show a model's config, special token ids and whether FIM is native"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="the same as --model")


def describe(m: CodeGemma, spec: str) -> dict:
    """What `info` prints, for a loaded model."""
    tok = m.tokenizer
    special = {name: tok.token_id(name) for name in ("<bos>", "<eos>", "<pad>", *NAMED_SPECIALS)}
    special.update({"<bos>": tok.bos_id, "<eos>": tok.eos_id, "<pad>": tok.pad_id})
    config = {k: v for k, v in asdict(m.config).items() if k != "extra"}
    return {"model": spec, "name": m.name, "config": config,
            "tokenizer": {"vocab_size": tok.vocab_size, "special_token_ids": special, "source": tok.source},
            "fim_native": m.fim_native,
            "completion": "fill-in-the-middle" if m.fim_native else "left-to-right (no FIM tokens)",
            "parameters": sum(p.numel() for p in m.model.parameters()),
            "dtype": str(m.model.dtype).removeprefix("torch."), "source_format": m.source_format,
            "quantized": quantized_summary(m.model)}


def quantized_summary(model) -> dict:
    from ..quantized import summary

    return summary(model)


def run(args: argparse.Namespace) -> int:
    if args.model_pos:
        args.model = args.model_pos
    print(json.dumps(describe(load_model(args), str(args.model)), indent=2))
    return 0
