"""`codegemma convert`: Hugging Face folder -> GGUF, or GGUF (or "default") -> Hugging Face folder."""

from __future__ import annotations

import argparse

HELP = "Hugging Face folder -> GGUF, or GGUF -> Hugging Face folder"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="HF folder, .gguf file or 'default'")
    p.add_argument("out", help="output .gguf file (from a folder) or folder (from a .gguf)")
    p.add_argument("--type", dest="out_type", default="f32", help="GGUF tensor type: f32, f16, bf16 or q8_0")


def run(args: argparse.Namespace) -> int:
    from ..sources import resolve
    from ..weights.convert import gguf_to_hf, hf_to_gguf

    src = resolve(args.source)
    out = hf_to_gguf(src.path, args.out, out_type=args.out_type) if src.kind == "hf" else gguf_to_hf(src.path, args.out)
    print(out)
    return 0
