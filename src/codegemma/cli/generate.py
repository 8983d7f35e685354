"""`codegemma generate`: continue a prompt."""

from __future__ import annotations

import argparse
import sys

from .common import emit, load_model, model_args, options, sampling_args

HELP = "continue a prompt"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("prompt", help="prompt text, or - to read standard input")
    p.add_argument("--parse-special", action="store_true",
                   help="turn special-token text in the prompt into control tokens")
    sampling_args(p, 256)


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    opts = options(args)
    emit(load_model(args).stream(prompt, parse_special=args.parse_special, **opts))
    return 0
