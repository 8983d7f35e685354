"""`codegemma serve`: completions for editors over the OpenAI, Ollama and llama.cpp APIs."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from pathlib import Path

from .common import CliError, load_model, model_args

HELP = "serve completions to editors (OpenAI, Ollama and llama.cpp APIs)"


def register(p: argparse.ArgumentParser) -> None:
    model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every route but /health")
    p.add_argument("--ctx", type=int, default=4096, help="context window in tokens (capped by the model's)")
    p.add_argument("--parallel", "-np", type=int, default=4,
                   help="sequences decoded together in one pass (llama.cpp's -np; default 4); each holds a cache "
                        "row of --ctx tokens")
    p.add_argument("--queue", type=int, default=512,
                   help="requests waiting at once beyond those decoding; more get 503 (default 512, as Ollama)")
    p.add_argument("--name", default=None, help="model name reported to clients (default: the file's name)")
    p.add_argument("--no-prefix-cache", action="store_true", help="always prefill the whole prompt")
    p.add_argument("--cache-ram", type=int, default=1024, metavar="MIB",
                   help="MiB of KV snapshots of earlier prompts kept in RAM, so switching back to a file is "
                        "warm (default 1024; 0 = off)")
    p.add_argument("--events-log", type=Path, default=None, metavar="PATH",
                   help="JSONL log of Tabby completions and editor events, for `codegemma stats` (default: "
                        "$XDG_STATE_HOME/codegemma/events.jsonl)")
    p.add_argument("--repo", type=Path, default=None, metavar="REPO",
                   help="a repository whose code most related to the cursor joins every completion's context "
                        "(indexed at start, kept fresh)")
    p.add_argument("--no-speculate", action="store_true",
                   help="turn off prompt-lookup speculative decoding (on where it is exact: GGUF on CPU)")
    p.add_argument("--cache-reuse", type=int, default=0, metavar="N",
                   help="shift cached chunks of at least N tokens that moved in the prompt into place, keys "
                        "re-rotated, instead of prefilling them again (llama.cpp's --cache-reuse; default 0 = off)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server.app import create_app, listen
    from ..server.events import default_events_path

    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535, got {args.port}")
    if args.cache_ram < 0:
        raise CliError(f"--cache-ram must be >= 0 MiB, got {args.cache_ram}")
    if args.ctx < 16 or args.queue < 1:
        raise CliError(f"--ctx must be >= 16 and --queue >= 1 (got --ctx {args.ctx}, --queue {args.queue})")
    if not 1 <= args.parallel <= 64 or args.cache_reuse < 0:
        raise CliError(f"--parallel must be in 1..64 and --cache-reuse >= 0 (got {args.parallel}, {args.cache_reuse})")
    if args.repo is not None and not args.repo.is_dir():
        raise CliError(f"--repo {args.repo}: not a folder")
    try:  # bound before the model loads: a taken port is a one-line error at once
        sock = listen(args.host, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    cg = load_model(args)
    if args.no_speculate:
        cg.speculate = False
    app = create_app(cg, name=args.name, ctx=args.ctx, queue=args.queue, parallel=args.parallel, api_key=args.api_key,
                     prefix_cache=not args.no_prefix_cache, cache_ram=args.cache_ram << 20,
                     cache_reuse=args.cache_reuse, events_log=args.events_log or default_events_path(),
                     engine_thread=False, repo=args.repo)
    fim = "native" if cg.fim_native else "fallback: left to right"
    ctx = min(args.ctx, cg.config.max_position_embeddings)
    print(f"codegemma: serving {args.name or cg.name} on http://{args.host}:{args.port} (FIM {fim}; context {ctx}; "
          f"{args.parallel} parallel)", file=sys.stderr, flush=True)
    # HTTP on another thread; the engine keeps the thread that loaded the model (see Engine.run)
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    engine = app.app.state.server.engine
    http = threading.Thread(target=_http, args=(web, sock, engine), name="codegemma-http", daemon=True)
    http.start()
    try:
        engine.run()
    finally:
        web.should_exit = True
        http.join(timeout=10)
    return 0


def _http(web, sock: socket.socket, engine) -> None:
    """Runs the web server until it stops; the engine stops with it."""
    try:
        web.run(sockets=[sock])
    finally:
        engine.close()
