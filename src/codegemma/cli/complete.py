"""`codegemma complete`: fill in the middle at FILE:LINE:COL or between --prefix and --suffix."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..prompts import FIM_MODES, ContextFile
from .common import CliError, emit, load_model, model_args, options, sampling_args

HELP = "fill in the middle at FILE:LINE:COL or between --prefix and --suffix"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("target", nargs="?", help="FILE:LINE:COL (1-based) of the cursor")
    p.add_argument("--prefix")
    p.add_argument("--suffix")
    p.add_argument("--path", help="file path shown to the model (default: FILE)")
    p.add_argument("--mode", default="psm", choices=FIM_MODES)
    p.add_argument("--context", action="append", default=[], help="another file of the repository (repeatable)")
    sampling_args(p, 128)


def read_cursor(target: str) -> tuple[str, str, str]:
    """FILE:LINE:COL (1-based) -> (path, prefix, suffix)."""
    parts = target.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise CliError(f"expected FILE:LINE:COL with 1-based numbers, got {target!r}")
    path, line, col = parts[0], int(parts[1]), int(parts[2])
    text = _read_text(path, "")
    lines = text.splitlines(keepends=True) or [""]
    if lines[-1].endswith(("\n", "\r")):
        lines.append("")
    if not 1 <= line <= len(lines):
        raise CliError(f"{path} has {len(lines)} lines; line {line} is out of range")
    body = lines[line - 1].rstrip("\r\n")
    if not 1 <= col <= len(body) + 1:
        raise CliError(f"line {line} of {path} has {len(body)} characters; column {col} is out of range")
    offset = sum(len(x) for x in lines[:line - 1]) + col - 1
    return path, text[:offset], text[offset:]


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {what}{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{what}{path} is not UTF-8 text (byte {exc.start})") from exc


def run(args: argparse.Namespace) -> int:
    if args.target and (args.prefix is not None or args.suffix is not None):
        raise CliError("give FILE:LINE:COL or --prefix/--suffix, not both")
    if args.target:
        path, prefix, suffix = read_cursor(args.target)
        path = args.path or path
    elif args.prefix is not None or args.suffix is not None:
        path, prefix, suffix = args.path, args.prefix or "", args.suffix or ""
    else:
        raise CliError("nothing to complete: give FILE:LINE:COL or --prefix/--suffix")
    context = [ContextFile(file, _read_text(file, "context file ")) for file in args.context]
    opts = options(args)
    m = load_model(args)
    emit(m.stream_complete(prefix, suffix, path=path, mode=args.mode, context=context, **opts))
    return 0
