"""`codegemma lsp`: a language server over stdio for LSP inline completion (Neovim 0.12, Emacs, Helix)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import CliError, load_model, model_args

HELP = "language server over stdio: inline completion (LSP 3.18) and completion items"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--server", default=None, metavar="URL",
                   help="forward to a running `codegemma serve` (its /infill) instead of loading a model here")
    p.add_argument("--ctx", type=int, default=4096, help="context window in tokens for the in-process model")
    p.add_argument("--max-tokens", type=int, default=128, help="longest completion (default 128)")
    p.add_argument("--repo", type=Path, default=None, metavar="REPO",
                   help="add the repository's code most related to the cursor to the context")


def run(args: argparse.Namespace) -> int:
    from ..lsp import EngineCompleter, ServerCompleter, serve_stdio

    if args.max_tokens < 1 or args.ctx < 16:
        raise CliError(f"--max-tokens must be >= 1 and --ctx >= 16 (got {args.max_tokens}, {args.ctx})")
    if args.repo is not None and not args.repo.is_dir():
        raise CliError(f"--repo {args.repo}: not a folder")
    repo = None
    if args.repo is not None:
        from ..repo import open_index

        repo = open_index(args.repo)
    if args.server:
        if not args.server.startswith(("http://", "https://")):
            raise CliError(f"--server must be an http(s) URL, got {args.server!r}")
        serve_stdio(ServerCompleter(args.server, args.max_tokens), engine_runs_here=False, repo=repo)
    else:
        serve_stdio(EngineCompleter(load_model(args), args.ctx, args.max_tokens, thread=False), engine_runs_here=True,
                    repo=repo)
    return 0
