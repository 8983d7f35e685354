"""`codegemma index REPO`: build or refresh a repository's local index for repository context."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import CliError

HELP = "index a repository (SQLite FTS5) for repository context in completions"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", type=Path, metavar="REPO", help="the repository folder")
    p.add_argument("--db", type=Path, default=None,
                   help="the index file (default: ~/.cache/codegemma/index/<name>-<hash>.sqlite)")


def run(args: argparse.Namespace) -> int:
    from ..repo import IndexError_, RepoIndex

    try:
        index = RepoIndex(args.repo, args.db)
    except IndexError_ as exc:
        raise CliError(str(exc)) from exc
    done = index.refresh()
    print(f"{args.repo}: {done['files']} files indexed ({done['updated']} read, {done['removed']} removed) "
          f"in {done['seconds']:.1f} s -> {index.db}")
    return 0
