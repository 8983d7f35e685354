"""`codegemma chat`: interactive, or one-shot with --message."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from .common import emit, load_model, model_args, options, sampling_args

HELP = "chat (interactive, or one-shot with --message)"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--message", help="one message; print the reply and exit")
    p.add_argument("--system", help="system text (folded into the first user turn)")
    sampling_args(p, 512)


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    m = load_model(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    if args.message is not None:
        emit(m.stream_chat(messages + [{"role": "user", "content": args.message}], **opts))
        return 0
    print(f"chatting with {m.name} (Ctrl-D to quit, /reset to start over)", file=sys.stderr)
    while True:
        try:
            text = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if text.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        reply: list[str] = []
        emit(_kept(m.stream_chat(messages, **opts), reply))
        messages.append({"role": "model", "content": "".join(reply)})


def _kept(chunks: Iterator[str], into: list[str]) -> Iterator[str]:
    for chunk in chunks:
        into.append(chunk)
        yield chunk
