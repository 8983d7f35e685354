"""The `codegemma` command: a table of subcommands, one module each, over the library.

Every module in this package registers its flags (`register`) and runs (`run`); nothing below the
CLI imports it. Errors of the package (`CodeGemmaError`) and of the system (`OSError`) reach the user
as one line, `codegemma: error: ...`, and exit code 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from ..errors import CodeGemmaError
from . import (
    chat,
    complete,
    convert,
    data,
    evaluate,
    explain,
    fix,
    generate,
    index,
    info,
    learn,
    lsp,
    serve,
    stats,
    train,
)
from .common import CliError

__all__ = ["COMMANDS", "CliError", "build_parser", "main"]

COMMANDS = {"generate": generate, "complete": complete, "chat": chat, "info": info, "convert": convert,
            "serve": serve, "eval": evaluate, "data": data, "train": train, "learn": learn, "fix": fix,
            "explain": explain, "stats": stats, "lsp": lsp, "index": index}
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codegemma", description="CodeGemma: completion, generation and chat.")
    parser.add_argument("--debug", action="store_true", help="show a traceback instead of a one-line error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        module.register(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a usage error exits with EXIT_USAGE
    try:
        return args.run(args)
    except BrokenPipeError:  # `codegemma ... | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except (CodeGemmaError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"codegemma: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Points stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
