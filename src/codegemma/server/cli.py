"""`codegemma serve`."""

from __future__ import annotations

import argparse
import sys


def add_serve_command(sub) -> None:
    p = sub.add_parser("serve", help="serve completions to editors (OpenAI, Ollama and llama.cpp APIs)")
    p.add_argument("--model", default="default", help="HF folder, .gguf file, or 'default' (the embedded model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--keep-quantized", action="store_true", help="GGUF: keep projections quantized")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every route but /health")
    p.add_argument("--ctx", type=int, default=4096, help="context window in tokens (capped by the model's)")
    p.add_argument("--parallel", type=int, default=4,
                   help="requests admitted at once (one generates, the rest wait); more get 503")
    p.add_argument("--name", default=None, help="model name reported to clients (default: the file's name)")
    p.add_argument("--no-prefix-cache", action="store_true", help="always prefill the whole prompt")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..api import load
    from ..cli import CliError
    from .app import create_app

    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535, got {args.port}")
    if args.ctx < 16 or args.parallel < 1:
        raise CliError("--ctx must be >= 16 and --parallel >= 1")
    cg = load(args.model, device=args.device, dtype=args.dtype, keep_quantized=args.keep_quantized)
    app = create_app(cg, name=args.name, ctx=args.ctx, parallel=args.parallel, api_key=args.api_key,
                     prefix_cache=not args.no_prefix_cache)
    fim = "native" if cg.fim_native else "fallback: left to right"
    ctx = min(args.ctx, cg.config.max_position_embeddings)
    print(f"codegemma: serving {args.name or cg.name} on http://{args.host}:{args.port} (FIM {fim}; context {ctx})",
          file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0
