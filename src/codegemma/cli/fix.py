"""`codegemma fix FILE [--write]`: locate syntax errors with the language's parser and propose a small correction."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CliError, load_model, model_args

HELP = "locate syntax errors in a file and propose a small correction, shown as a diff"
EXIT_UNFIXED = 1


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("file", help="the source file (language from its extension)")
    p.add_argument("--language", default=None, help="override the language the extension implies (e.g. python, go)")
    p.add_argument("--write", action="store_true", help="write the accepted correction back to FILE")


def read_source(path: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text (byte {exc.start})") from exc


def run(args: argparse.Namespace) -> int:
    from ..learn.fixing import FixError, fix, language_of, problems

    source = read_source(args.file)
    try:
        language = args.language or language_of(args.file)
        found = problems(source, language)
    except FixError as exc:
        raise CliError(str(exc)) from exc
    if not found:
        print(f"{args.file}: no syntax errors ({language})", file=sys.stderr)
        return 0
    for p in found:
        print(f"{args.file}:{p.line}:{p.column}: error: {p.message}")
    model = load_model(args)
    result = fix(source, language, model, name=Path(args.file).name)
    for reason in result.rejected:
        print(f"codegemma: rejected {reason}", file=sys.stderr)
    if result.fixed is None:
        print(f"codegemma: no correction found that parses and changes at most a few lines ({model.name})",
              file=sys.stderr)
        return EXIT_UNFIXED
    sys.stdout.write(result.diff)
    who = f"the model {model.name}" if result.source == "model" else "the parser"
    if args.write:
        Path(args.file).write_text(result.fixed, encoding="utf-8")
        print(f"codegemma: wrote the correction by {who} to {args.file}", file=sys.stderr)
    else:
        print(f"codegemma: correction by {who}; --write applies it", file=sys.stderr)
    return 0
