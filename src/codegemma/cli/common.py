"""What every command shares: CliError, the model and sampling flags, loading a model, streaming output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import CodeGemmaError

if TYPE_CHECKING:
    from ..api import CodeGemma


class CliError(CodeGemmaError):
    """A user error reported as one line on stderr."""


def model_args(p: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype and the GGUF options, shared by every command that loads a model."""
    p.add_argument("--model", default="default", help="HF folder, .gguf file, or 'default' (the embedded model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="activations (and dense weights); default: bfloat16 for GGUF on CPU and on CUDA, "
                        "float32 for other models on CPU")
    p.add_argument("--dense", dest="keep_quantized", action="store_const", const=False, default=None,
                   help="GGUF on CPU: dequantize every weight to --dtype instead of reading the file's "
                        "quantized blocks in place (more memory, slower decoding)")


def sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", type=int, default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="1.0 = off (default; Gemma dislikes 1.1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--no-speculate", dest="speculate", action="store_const", const=False, default=None,
                   help="turn off prompt-lookup speculative decoding (on where it is exact: GGUF on CPU)")


def options(args: argparse.Namespace) -> dict:
    """The sampling flags, checked, as keyword arguments of the API's generation methods."""
    from ..api import Options

    if args.max_tokens < 0:
        raise CliError("--max-tokens must be >= 0")
    chosen = dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                  min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed, stop=tuple(args.stop),
                  speculate=args.speculate)
    try:
        Options(**chosen).sampling()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return chosen


def load_model(args: argparse.Namespace) -> CodeGemma:
    from ..api import load

    return load(args.model, device=args.device, dtype=args.dtype, keep_quantized=args.keep_quantized)


def emit(chunks: Iterable[str], out=None) -> None:
    """Writes chunks as they come, then a newline."""
    out = out or sys.stdout
    for chunk in chunks:
        out.write(chunk)
        out.flush()
    out.write("\n")
