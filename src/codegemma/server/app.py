"""`codegemma serve`: an ASGI app speaking the OpenAI, Ollama and llama.cpp dialects that editors use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..api import CodeGemma, Options
from ..errors import CodeGemmaError
from ..generate.sampling import SamplingParams
from ..prompts import (
    FIM_STOP_TOKENS,
    ContextFile,
    FimPrompt,
    FimRequest,
    PromptError,
    build_fim,
    chat_prompt,
    chat_stop_ids,
    encode_prompt,
    fim_layout,
    render,
)
from . import schemas as S
from .engine import Engine, Job, QueueFull

OLLAMA_VERSION = "0.9.0"  # the Ollama API level these routes follow
ALIAS = "codegemma"  # listed beside the served name: the model name editors' settings use


class ApiError(CodeGemmaError):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_body(path: str, status: int, message: str, kind: str) -> dict:
    """Each dialect's error shape: OpenAI nests an object, Ollama a string, llama.cpp a coded object."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": kind, "code": status}}
    if path.startswith("/api/"):
        return {"error": message}
    return {"error": {"code": status, "message": message, "type": kind}}


class Guard:
    """ASGI middleware: bearer-token auth (all routes but /health) and a cap on request body size."""

    def __init__(self, app, *, api_key: str | None, max_body: int) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = dict(scope["headers"])
        if self.api_key and path != "/health":
            if headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {self.api_key}":
                return await _send_json(send, 401, error_body(path, 401, "missing or wrong API key", "auth_error"))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _send_json(send, 413, error_body(path, 413, f"request body over {self.max_body} bytes",
                                                          "invalid_request_error"))
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _send_json(send, 413, error_body(path, 413, f"request body over {self.max_body} bytes",
                                                              "invalid_request_error"))
        if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b""):
            # curl -d and some editor plugins omit the header; every POST body here is JSON
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"content-type"]
                         + [(b"content-type", b"application/json")])
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, if it comes

        await self.app(scope, replay, send)


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class Server:
    """Routes over one Engine; request handling is async, generation runs on the engine's thread."""

    def __init__(self, cg: CodeGemma, *, name: str, ctx: int, parallel: int, prefix_cache: bool = True) -> None:
        self.cg, self.name, self.ctx = cg, name, ctx
        self.engine = Engine(cg, ctx=ctx, parallel=parallel, prefix_cache=prefix_cache)
        self.created = int(time.time())

    # Shared checks and option mapping.
    def check_model(self, model: str | None) -> None:
        """One model is served, under whatever name a client was configured with (as llama.cpp's server)."""

    @property
    def names(self) -> list[str]:
        """The served name, then the alias editors are usually configured with."""
        return [self.name] + ([ALIAS] if self.name != ALIAS else [])

    def limit(self, requested: int | None, prompt_len: int, default: int) -> int:
        """max tokens for a request, capped at the room the window has left (never refused, as Ollama
        and llama.cpp): unlimited (-1/None) and too-large limits mean up to the end of the window."""
        room = self.ctx - prompt_len
        if room <= 0:
            raise ApiError(400, f"the prompt has {prompt_len} tokens; the context window is {self.ctx}")
        if requested is None:
            requested = default
        return room if requested < 0 else min(requested, room)

    @staticmethod
    def stops(stop: str | list[str] | None) -> tuple[str, ...]:
        return () if stop is None else (stop,) if isinstance(stop, str) else tuple(s for s in stop if s)

    @staticmethod
    def options(max_tokens: int, *, temperature=None, top_p=None, top_k=None, min_p=None, repeat_penalty=None,
                seed=None, stop: tuple[str, ...] = (), stop_ids: tuple[int, ...] = ()) -> Options:
        opts = Options(max_tokens=max_tokens, temperature=float(temperature or 0.0),
                       top_p=float(top_p) if top_p else 1.0, top_k=top_k or 0, min_p=float(min_p or 0.0),
                       repetition_penalty=float(repeat_penalty or 1.0), seed=seed, stop=stop, stop_ids=stop_ids)
        try:
            SamplingParams(opts.temperature, opts.top_k, opts.top_p, opts.min_p, opts.repetition_penalty, opts.seed)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        return opts

    def encode_templated(self, text: str) -> list[int]:
        """A prompt the client already templated: special-token text becomes control tokens."""
        return self.cg.tokenizer.encode(text, bos=True, parse_special=True)

    def encode_chat(self, messages: list[dict]) -> list[int]:
        try:
            return encode_prompt(self.cg.tokenizer, chat_prompt(messages))
        except PromptError as exc:
            raise ApiError(400, str(exc)) from exc

    def chat_stop_ids(self) -> tuple[int, ...]:
        return chat_stop_ids(self.cg.tokenizer)

    def fim(self, req: FimRequest, max_tokens: int | None = None, default: int = 128) -> FimPrompt:
        """The request's ids, cut to leave room for the tokens to generate (at most half the window: an
        editor's num_predict of 4096 in a 4096 window still leaves the code nearest the cursor)."""
        reserve = default if max_tokens is None or max_tokens < 0 else max_tokens
        reserve = min(reserve, self.ctx // 2)
        try:
            return build_fim(self.cg.tokenizer, req, budget=self.ctx - reserve)
        except PromptError as exc:
            raise ApiError(400, str(exc)) from exc

    # Running a job and reading its events.
    def start(self, ids: list[int], opts: Options, *, n_indent: int = 0, time_limit_ms: float = 0.0) -> Job:
        job = Job(ids, opts, asyncio.get_running_loop(), n_indent=n_indent, time_limit_ms=time_limit_ms)
        try:
            self.engine.submit(job)
        except QueueFull as exc:
            raise ApiError(503, str(exc), "server_busy") from exc
        return job

    async def events(self, job: Job, request: Request) -> AsyncIterator[tuple[str, Any]]:
        """The job's ("text", str) events then one ("done", summary); cancels it if the client leaves."""
        finished = False
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(job.events.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                if kind == "error":
                    finished = True
                    raise ApiError(500, f"generation failed: {value}", "server_error")
                yield kind, value
                if kind == "done":
                    finished = True
                    return
        finally:
            if not finished:
                job.cancelled.set()

    async def collect(self, job: Job, request: Request) -> tuple[str, dict]:
        text, summary = [], {"finish_reason": "cancelled", "prompt_tokens": len(job.prompt), "completion_tokens": 0}
        async for kind, value in self.events(job, request):
            if kind == "text":
                text.append(value)
            else:
                summary = value
        return "".join(text), summary


def _stream(lines: AsyncIterator[str], media_type: str) -> StreamingResponse:
    return StreamingResponse(lines, media_type=media_type, headers={"Cache-Control": "no-cache"})


def _finish(reason: str) -> str:
    return "stop" if reason in ("stop", "cancelled") else "length"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def create_app(cg: CodeGemma, *, name: str | None = None, ctx: int = 4096, parallel: int = 4,
               api_key: str | None = None, max_body: int = 8 << 20, prefix_cache: bool = True) -> FastAPI:
    ctx = min(ctx, cg.config.max_position_embeddings)
    server = Server(cg, name=name or cg.name or "codegemma", ctx=ctx, parallel=parallel, prefix_cache=prefix_cache)
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        server.engine.close()

    app = FastAPI(title="codegemma", version=__version__, lifespan=lifespan,
                  description="OpenAI, Ollama and llama.cpp compatible completion server for CodeGemma models.")
    app.state.server = server
    _install_errors(app)
    _openai_routes(app, server)
    _ollama_routes(app, server)
    _llama_routes(app, server)
    return Guard(app, api_key=api_key, max_body=max_body)  # type: ignore[return-value]


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


def _openai_routes(app: FastAPI, server: Server) -> None:
    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": server.created,
                                            "owned_by": "codegemma"} for name in server.names]}

    @app.post("/v1/completions")
    async def completions(body: S.CompletionRequest, request: Request):
        server.check_model(body.model)
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
        stop = server.stops(body.stop)
        if body.suffix is not None:  # FIM: prompt and suffix are code, never parsed for special tokens
            fim = server.fim(FimRequest(prompt, body.suffix), max_tokens=body.max_tokens, default=16)
            ids, stop, stop_ids = fim.ids, stop + fim.stop, fim.stop_ids
        else:
            ids, stop_ids = server.encode_templated(prompt), ()
        opts = server.options(server.limit(body.max_tokens, len(ids), 16), temperature=body.temperature,
                              top_p=body.top_p, seed=body.seed, stop=stop, stop_ids=stop_ids)
        job = server.start(ids, opts)
        ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(text: str, reason: str | None) -> dict:
            return {"id": ident, "object": "text_completion", "created": created, "model": server.name,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}]}

        if body.stream:
            return _openai_stream(server, job, request, chunk, lambda text: text or "", usage=_include_usage(body))
        text, summary = await server.collect(job, request)
        out = chunk(text, _finish(summary["finish_reason"]))
        out["usage"] = _usage(summary)
        return out

    @app.post("/v1/chat/completions")
    async def chat(body: S.ChatRequest, request: Request):
        server.check_model(body.model)
        messages = [{"role": m.role, "content": _content_text(m.content)} for m in body.messages]
        ids = server.encode_chat(messages)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        opts = server.options(server.limit(limit, len(ids), -1), temperature=body.temperature, top_p=body.top_p,
                              seed=body.seed, stop=server.stops(body.stop), stop_ids=server.chat_stop_ids())
        job = server.start(ids, opts)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict, reason: str | None) -> dict:
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": server.name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

        if body.stream:
            return _openai_stream(server, job, request, chunk, lambda text: {} if text is None else {"content": text},
                                  first=chunk({"role": "assistant", "content": ""}, None), usage=_include_usage(body))
        text, summary = await server.collect(job, request)
        return {"id": ident, "object": "chat.completion", "created": created, "model": server.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": _finish(summary["finish_reason"])}],
                "usage": _usage(summary)}


def _openai_stream(server: Server, job: Job, request: Request, chunk: Callable[[Any, str | None], dict],
                   delta: Callable[[str | None], Any], first: dict | None = None,
                   usage: bool = False) -> StreamingResponse:
    """OpenAI's SSE: a chunk per text event (`delta(text)`), a final one with the finish reason, with
    `usage` (stream_options.include_usage) one more with no choices and the token counts, then [DONE]."""
    async def lines() -> AsyncIterator[str]:
        if first is not None:
            yield f"data: {json.dumps(first)}\n\n"
        async for kind, value in server.events(job, request):
            out = chunk(delta(value), None) if kind == "text" else chunk(delta(None), _finish(value["finish_reason"]))
            yield f"data: {json.dumps(out)}\n\n"
            if kind == "done" and usage:
                yield f"data: {json.dumps({**out, 'choices': [], 'usage': _usage(value)})}\n\n"
        yield "data: [DONE]\n\n"
    return _stream(lines(), "text/event-stream")


def _include_usage(body: S.OpenAIRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def _content_text(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text or "" for part in content if part.type == "text")


def _usage(summary: dict) -> dict:
    p, c = summary["prompt_tokens"], summary["completion_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _ollama_routes(app: FastAPI, server: Server) -> None:
    def options(o: S.OllamaOptions | None, prompt_len: int, stop_ids: tuple[int, ...], extra_stop=()) -> Options:
        o = o or S.OllamaOptions()
        return server.options(server.limit(o.num_predict, prompt_len, -1), temperature=o.temperature,
                              top_p=o.top_p, top_k=o.top_k, min_p=o.min_p, repeat_penalty=o.repeat_penalty,
                              seed=o.seed, stop=server.stops(o.stop) + tuple(extra_stop), stop_ids=stop_ids)

    def final(summary: dict, extra: dict) -> dict:
        seconds = int(summary.get("seconds", 0) * 1e9)
        return {"model": server.name, "created_at": _now_iso(), **extra, "done": True,
                "done_reason": _finish(summary["finish_reason"]), "total_duration": seconds, "load_duration": 0,
                "prompt_eval_count": summary["prompt_tokens"], "prompt_eval_duration": 0,
                "eval_count": summary["completion_tokens"], "eval_duration": seconds}

    async def respond(job: Job, request: Request, stream: bool, piece: Callable[[str], dict]):
        if stream:
            async def lines() -> AsyncIterator[str]:
                async for kind, value in server.events(job, request):
                    if kind == "text":
                        yield json.dumps({"model": server.name, "created_at": _now_iso(), **piece(value),
                                          "done": False}) + "\n"
                    else:
                        yield json.dumps(final(value, piece(""))) + "\n"
            return _stream(lines(), "application/x-ndjson")
        text, summary = await server.collect(job, request)
        return final(summary, piece(text))

    @app.post("/api/generate")
    async def generate(body: S.OllamaGenerateRequest, request: Request):
        server.check_model(body.model)
        num_predict = body.options.num_predict if body.options else None
        if body.suffix is not None:
            fim = server.fim(FimRequest(body.prompt, body.suffix), max_tokens=num_predict)
            ids, stop_ids, extra = fim.ids, fim.stop_ids, fim.stop
        elif body.raw:
            ids, stop_ids, extra = server.encode_templated(body.prompt), (), ()
        else:
            # Ollama tokenizes a non-raw prompt with special tokens parsed (its template is {{ .Prompt }});
            # Tabby and llm-ls send FIM-templated text this way
            text = f"{body.system}\n\n{body.prompt}" if body.system else body.prompt
            ids, stop_ids, extra = server.encode_templated(text), (), ()
        if not body.prompt and body.suffix is None and not body.system:  # Ollama's "load the model" call
            return {"model": server.name, "created_at": _now_iso(), "response": "", "done": True,
                    "done_reason": "load"}
        job = server.start(ids, options(body.options, len(ids), stop_ids, extra))
        return await respond(job, request, body.stream, lambda text: {"response": text})

    @app.post("/api/chat")
    async def chat(body: S.OllamaChatRequest, request: Request):
        server.check_model(body.model)
        ids = server.encode_chat([{"role": m.role, "content": m.content} for m in body.messages])
        job = server.start(ids, options(body.options, len(ids), server.chat_stop_ids()))
        return await respond(job, request, body.stream,
                             lambda text: {"message": {"role": "assistant", "content": text}})

    @app.get("/api/tags")
    async def tags() -> dict:
        return {"models": [_ollama_model(server, name) for name in server.names]}

    @app.post("/api/show")
    async def show(body: S.OllamaShowRequest) -> dict:
        server.check_model(body.model or body.name)
        fim = server.cg.fim_native
        psm = render(fim_layout("psm", "{{ .Prompt }}", "{{ .Suffix }}"))  # the layout build_fim sends
        template = "{{- if .Suffix }}" + psm + "{{- else }}{{ .Prompt }}{{- end }}" if fim else "{{ .Prompt }}"
        c = server.cg.config
        return {"modelfile": f"FROM {server.name}\n", "parameters": _ollama_parameters(server),
                "template": template, "details": _ollama_model(server, server.name)["details"],
                "license": "Gemma Terms of Use (https://ai.google.dev/gemma/terms); the weights' own licence governs",
                "model_info": {"general.architecture": c.model_type, f"{c.model_type}.context_length": server.ctx,
                               f"{c.model_type}.embedding_length": c.hidden_size,
                               f"{c.model_type}.block_count": c.num_hidden_layers},
                "capabilities": ["completion", "insert"] if fim else ["completion"],
                "modified_at": _now_iso()}

    @app.get("/api/version")
    async def version() -> dict:
        return {"version": OLLAMA_VERSION}


def _ollama_parameters(server: Server) -> str:
    """Modelfile parameters as Ollama prints them; Continue reads num_ctx and stop from here."""
    stops = [t for t in FIM_STOP_TOKENS if t != "<eos>" and server.cg.tokenizer.token_id(t) is not None]
    lines = [("num_ctx", str(server.ctx)), *(("stop", f'"{t}"') for t in stops), ("temperature", "0"),
             ("repeat_penalty", "1")]
    return "\n".join(f"{key:<30} {value}" for key, value in lines)


def _ollama_model(server: Server, name: str) -> dict:
    params = sum(p.numel() for p in server.cg.model.parameters())
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return {"name": name, "model": name, "modified_at": _now_iso(), "size": params,
            "digest": uuid.uuid5(uuid.NAMESPACE_URL, server.name).hex,
            "details": {"format": server.cg.source_format or "safetensors",
                        "family": server.cg.config.model_type, "families": [server.cg.config.model_type],
                        "parameter_size": size, "quantization_level": str(server.cg.model.dtype).removeprefix(
                            "torch.")}}


def _llama_routes(app: FastAPI, server: Server) -> None:
    def options(body: S.LlamaCommon, prompt_len: int, stop_ids=(), extra_stop=()) -> Options:
        return server.options(server.limit(body.n_predict, prompt_len, -1), temperature=body.temperature,
                              top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
                              repeat_penalty=body.repeat_penalty, seed=body.seed,
                              stop=tuple(body.stop or ()) + tuple(extra_stop), stop_ids=stop_ids)

    async def respond(job: Job, request: Request, body: S.LlamaCommon, truncated: bool = False):
        def final(text: str, summary: dict) -> dict:
            out = {"content": text, "stop": True, "model": server.name, "truncated": truncated,
                   "tokens_predicted": summary["completion_tokens"], "tokens_evaluated": summary["prompt_tokens"],
                   "tokens_cached": summary.get("cached_tokens", 0),
                   "stop_type": "eos" if summary["finish_reason"] == "stop" else "limit",
                   "generation_settings": _generation_settings(server, job), "timings": _llama_timings(summary)}
            return _response_fields(out, body.response_fields)

        if body.stream:
            async def lines() -> AsyncIterator[str]:
                async for kind, value in server.events(job, request):
                    if kind == "text":
                        yield f"data: {json.dumps({'content': value, 'stop': False})}\n\n"
                    else:
                        yield f"data: {json.dumps(final('', value))}\n\n"
            return _stream(lines(), "text/event-stream")
        text, summary = await server.collect(job, request)
        return final(text, summary)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/infill")
    async def infill(body: S.InfillRequest, request: Request):
        files = tuple(ContextFile(f.filename, f.text) for f in body.input_extra)
        fim = server.fim(FimRequest(body.input_prefix, body.input_suffix, context=files, middle_start=body.prompt),
                         max_tokens=body.n_predict)
        opts = options(body, len(fim.ids), fim.stop_ids, fim.stop)
        job = server.start(fim.ids, opts, n_indent=body.n_indent, time_limit_ms=float(body.t_max_predict_ms))
        return await respond(job, request, body, fim.truncated)

    @app.post("/completion")
    async def completion(body: S.LlamaCompletionRequest, request: Request):
        if isinstance(body.prompt, list):
            ids = list(body.prompt)
            if max(ids) >= server.cg.tokenizer.vocab_size:
                raise ApiError(400, f"token id {max(ids)} is outside the vocabulary")
        else:
            ids = server.encode_templated(body.prompt)
        job = server.start(ids, options(body, len(ids)), n_indent=body.n_indent,
                           time_limit_ms=float(body.t_max_predict_ms))
        return await respond(job, request, body)


def _llama_timings(summary: dict) -> dict:
    """llama.cpp's `timings`: prefill (prompt_*) and generation (predicted_*), in ms, per token and per second."""
    prompt_n = summary["prompt_tokens"] - summary.get("cached_tokens", 0)
    predicted_n = summary["completion_tokens"]
    prompt_ms = summary.get("prompt_seconds", 0.0) * 1000
    predicted_ms = max(summary.get("seconds", 0.0) * 1000 - prompt_ms, 0.0)

    def rates(n: int, ms: float) -> tuple[float, float]:
        return (ms / n if n else 0.0), (n * 1000 / ms if ms > 0 else 0.0)

    prompt_per_token_ms, prompt_per_second = rates(prompt_n, prompt_ms)
    predicted_per_token_ms, predicted_per_second = rates(predicted_n, predicted_ms)
    return {"cache_n": summary.get("cached_tokens", 0), "prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_per_token_ms, "prompt_per_second": prompt_per_second,
            "predicted_n": predicted_n, "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_per_token_ms, "predicted_per_second": predicted_per_second}


def _generation_settings(server: Server, job: Job) -> dict:
    """llama.cpp's `generation_settings` (llama.vscode reads n_ctx from every answer)."""
    o = job.options
    return {"n_ctx": server.ctx, "n_predict": o.max_tokens, "model": server.name, "seed": o.seed,
            "temperature": o.temperature, "top_k": o.top_k, "top_p": o.top_p, "min_p": o.min_p,
            "repeat_penalty": o.repetition_penalty, "stop": list(o.stop), "n_indent": job.n_indent,
            "t_max_predict_ms": job.time_limit_ms, "stream": False,
            "samplers": ["penalties", "top_k", "top_p", "min_p", "temperature"]}


def _response_fields(response: dict, fields: list[str] | None) -> dict:
    """llama.cpp's `response_fields`: only these paths ("a/b" reaches into objects), keyed by the path."""
    if not fields:
        return response
    out = {}
    for path in fields:
        value: Any = response
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            out[path] = value
    return out
