"""`codegemma explain FILE[:START-END]`: stream an explanation of a file or of a range of its lines."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .common import CliError, emit, load_model, model_args, options, sampling_args
from .fix import read_source

HELP = "explain a file, or lines START-END of it (FILE:START-END), streaming"
_RANGE = re.compile(r"^(?P<path>.+?):(?P<start>\d+)(?:-(?P<end>\d+))?$")


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("target", metavar="FILE[:START-END]", help="the file, optionally with a 1-based line range")
    sampling_args(p, 400)


def selection(target: str) -> tuple[str, str, str]:
    """(path, the selected code, its language) for FILE or FILE:START-END (or FILE:LINE)."""
    from ..learn.fixing import LANGUAGES

    match = None if Path(target).is_file() else _RANGE.match(target)
    path = match["path"] if match else target
    source = read_source(path)
    lines = source.splitlines()
    if match:
        start, end = int(match["start"]), int(match["end"] or match["start"])
        if not 1 <= start <= end <= len(lines):
            raise CliError(f"lines {start}-{end} are out of range: {path} has {len(lines)} lines")
        source = "\n".join(lines[start - 1:end])
    if not source.strip():
        raise CliError(f"nothing to explain: the selection of {path} is empty")
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return path, source, LANGUAGES.get(f".{suffix}", ("code",))[0]


def run(args: argparse.Namespace) -> int:
    from ..learn.hints import stream_explanation

    path, code, language = selection(args.target)
    opts = options(args)
    model = load_model(args)
    print(f"codegemma: explaining {args.target} with {model.name}", file=sys.stderr, flush=True)
    emit(stream_explanation(model, code, language, **opts))
    return 0
