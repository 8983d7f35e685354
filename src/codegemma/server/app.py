"""`codegemma serve`: an ASGI app speaking the OpenAI, Ollama, llama.cpp and Tabby dialects that editors use.

One router per dialect (openai.py, ollama.py, llamacpp.py, tabby.py) over one shared Server (service.py), behind
the Guard middleware (guard.py); errors come back in each dialect's shape.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..api import CodeGemma
from . import llamacpp, ollama, openai, tabby
from .engine import CACHE_RAM, PARALLEL, QUEUE_DEPTH
from .guard import Guard
from .service import ApiError, Server, error_body


def create_app(cg: CodeGemma, *, name: str | None = None, ctx: int = 4096, queue: int = QUEUE_DEPTH,
               parallel: int = PARALLEL, api_key: str | None = None, max_body: int = 8 << 20,
               prefix_cache: bool = True, cache_ram: int = CACHE_RAM, cache_reuse: int = 0,
               events_log: Path | None = None, engine_thread: bool = True, repo: Path | None = None) -> Guard:
    """The ASGI app. `app.app.state.server` is the Server; the engine starts now and stops with the app.
    parallel: sequences decoded together (each a cache row of ctx tokens); cache_ram: bytes of KV snapshots
    of earlier prompts kept in RAM (0: only the rows); cache_reuse: shortest moved chunk shifted into place
    (0: off); events_log: the JSONL file Tabby completions and editor events are appended to (None: not kept);
    engine_thread=False: the caller runs `app.app.state.server.engine.run()` on the thread that loaded the model;
    repo: a repository whose chunks most related to the cursor join every FIM prompt's context (repo.py)."""
    ctx = min(ctx, cg.config.max_position_embeddings)
    server = Server(cg, name=name or cg.name or "codegemma", ctx=ctx, queue_depth=queue, parallel=parallel,
                    prefix_cache=prefix_cache, cache_ram=cache_ram, cache_reuse=cache_reuse, events_log=events_log,
                    engine_thread=engine_thread, repo=repo)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        server.engine.close()

    app = FastAPI(title="codegemma", version=__version__, lifespan=lifespan,
                  description="OpenAI, Ollama and llama.cpp compatible completion server for CodeGemma models.")
    app.state.server = server
    _install_errors(app)
    for router in (openai.router, ollama.router, llamacpp.router, tabby.router):
        app.include_router(router)
    return Guard(app, api_key=api_key, max_body=max_body)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket to give uvicorn (`sockets=[...]`), made with its protocol named: accepted
    connections inherit it, and asyncio turns off Nagle's algorithm only on sockets that say IPPROTO_TCP.
    `socket.create_server` leaves it 0, and then every request on a kept-alive connection after the first
    waited about 40 ms for the client's delayed ACK (uvicorn issue #3149). Raises OSError."""
    sock = socket.create_server((host, port))
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, exc.status, exc.message, exc.kind), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if first.get("type") == "json_invalid":
            message = "the body is not valid JSON (or not UTF-8)"
        return JSONResponse(error_body(request.url.path, 400, message, "invalid_request_error"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, exc.status_code, str(exc.detail), "invalid_request_error"),
                            status_code=exc.status_code)
