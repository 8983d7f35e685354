"""`codegemma learn`: the practice web app (exercises graded in the sandbox, hints, explanations, fixes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CliError, load_model, model_args

HELP = "practise coding: exercises graded in the sandbox, hints, explanations and fixes (a local web app)"


def default_db() -> Path:
    from ..default_model import cache_dir

    return cache_dir() / "learn.sqlite"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--db", default=None, help="the progress database (SQLite; default: the cache's learn.sqlite)")
    p.add_argument("--export", metavar="FILE", default=None,
                   help="write the progress in --db as JSON lines to FILE ('-' for stdout) and exit")


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from ..learn.progress import Progress

    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535, got {args.port}")
    db = Path(args.db) if args.db else default_db()
    try:
        progress = Progress(db)
    except sqlite3.DatabaseError as exc:
        raise CliError(f"cannot use {db} as the progress database: {exc}") from exc
    if args.export is not None:
        return _export(progress, args.export)
    return _serve(args, progress, db)


def _export(progress, target: str) -> int:
    out = sys.stdout if target == "-" else open(target, "w", encoding="utf-8")
    try:
        for line in progress.export():
            out.write(line)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _serve(args: argparse.Namespace, progress, db: Path) -> int:
    import uvicorn

    from ..learn.app import create_app

    model = load_model(args)
    app = create_app(model, progress)
    print(f"codegemma: learn on http://{args.host}:{args.port} with {model.name} (progress in {db})",
          file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0
