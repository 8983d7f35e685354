"""What every dialect shares: the Server (limits, options, prompts, jobs and their events), errors in
each dialect's shape, and one streaming encoder (SSE or NDJSON)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..api import CodeGemma, Options
from ..errors import CodeGemmaError
from ..prompts import FimPrompt, FimRequest, PromptError, build_fim, chat_prompt, chat_stop_ids, encode_prompt
from .engine import CACHE_RAM, INTERACTIVE, PARALLEL, QUEUE_DEPTH, Engine, Job, QueueFull
from .events import EventLog

logger = logging.getLogger(__name__)

ALIAS = "codegemma"  # listed beside the served name: the model name editors' settings use
DISCONNECT_POLL = 0.05  # seconds between checks that the client is still there
REPO_REFRESH = 10.0  # seconds between re-reads of a --repo's changed files
FIM_RESERVE = 0.25  # share of the window a FIM prompt leaves for generation, whatever the request's limit


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


class Server:
    """The state every route reaches: one model and one Engine; generation runs on the engine's thread."""

    def __init__(self, cg: CodeGemma, *, name: str, ctx: int, queue_depth: int = QUEUE_DEPTH,
                 parallel: int = PARALLEL, prefix_cache: bool = True, cache_ram: int = CACHE_RAM,
                 cache_reuse: int = 0, events_log: Path | None = None, engine_thread: bool = True,
                 repo: Path | None = None) -> None:
        self.cg, self.name, self.ctx = cg, name, ctx
        self.engine = Engine(cg, ctx=ctx, queue_depth=queue_depth, parallel=parallel, prefix_cache=prefix_cache,
                             cache_ram=cache_ram, cache_reuse=cache_reuse, thread=engine_thread)
        self.created = int(time.time())
        self.events_log = EventLog(events_log)  # Tabby completions and editor events (None: not kept)
        self.repo = None
        if repo is not None:
            from ..repo import RepoIndex

            self.repo = RepoIndex(repo)
            self.repo.refresh()
            threading.Thread(target=self._keep_fresh, name="codegemma-repo-index", daemon=True).start()

    @property
    def names(self) -> list[str]:
        """The served name, then the alias editors are usually configured with. One model is served,
        under whatever name a client sends (as llama.cpp's server)."""
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
    def options(max_tokens: int, *, temperature: float | None = None, top_p: float | None = None,
                top_k: int | None = None, min_p: float | None = None, repeat_penalty: float | None = None,
                seed: int | None = None, stop: tuple[str, ...] = (), stop_ids: tuple[int, ...] = ()) -> Options:
        opts = Options(max_tokens=max_tokens, temperature=float(temperature or 0.0),
                       top_p=float(top_p) if top_p else 1.0, top_k=top_k or 0, min_p=float(min_p or 0.0),
                       repetition_penalty=float(repeat_penalty or 1.0), seed=seed, stop=stop, stop_ids=stop_ids)
        try:
            opts.sampling()
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        return opts

    def encode_templated(self, text: str) -> list[int]:
        """A prompt the client already templated: special-token text becomes control tokens."""
        return self.cg.tokenizer.encode(text, bos=True, parse_special=True)

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Gemma's chat prompt. A conversation longer than 3/4 of the window loses its oldest exchanges
        (a user turn and the reply) first, the system text kept, as Ollama fits a chat into its window."""
        try:
            ids = encode_prompt(self.cg.tokenizer, chat_prompt(messages))
            head = messages[:1] if messages and messages[0].get("role") == "system" else []
            rest = messages[len(head):]
            while len(ids) > self.ctx * 3 // 4 and len(rest) > 2:
                rest = rest[2:]
                ids = encode_prompt(self.cg.tokenizer, chat_prompt(head + rest))
            return ids
        except PromptError as exc:
            raise ApiError(400, str(exc)) from exc

    def chat_stop_ids(self) -> tuple[int, ...]:
        return chat_stop_ids(self.cg.tokenizer)

    def fim(self, req: FimRequest) -> FimPrompt:
        """The request's ids, cut to leave FIM_RESERVE of the window for the tokens to generate: a fixed
        reserve, so that a background fill (n_predict 0) and the real request keep the same context
        files, and an editor's n_predict of 4096 still leaves the code nearest the cursor."""
        if self.repo is not None:  # the repository's chunks most related to the cursor, farther than the editor's
            req = replace(req, context=self.repo.related(req.prefix, req.suffix, req.path) + req.context)
        try:
            return build_fim(self.cg.tokenizer, req, budget=self.ctx - int(self.ctx * FIM_RESERVE))
        except PromptError as exc:
            raise ApiError(400, str(exc)) from exc

    def _keep_fresh(self, interval: float = REPO_REFRESH) -> None:
        """Re-reads the repository's changed files every `interval` seconds, off the request path."""
        while not self.engine.closed.wait(interval):
            try:
                self.repo.refresh()
            except Exception:  # a file system hiccup: try again next time
                logger.exception("refreshing the repository index failed")

    # Running a job and reading its events.
    def start(self, ids: list[int], opts: Options, request: Request, *, priority: int = INTERACTIVE,
              n_indent: int = 0, time_limit_ms: float = 0.0) -> Job:
        """Queues a job. Interactive jobs of one client (address, user agent, route) supersede each other."""
        return self.start_candidates(ids, lambda _: opts, 1, request, priority=priority, n_indent=n_indent,
                                     time_limit_ms=time_limit_ms)[0]

    def start_candidates(self, ids: list[int], make_options: Callable[[int], Options], n: int, request: Request, *,
                         priority: int = INTERACTIVE, n_indent: int = 0, time_limit_ms: float = 0.0) -> list[Job]:
        """Queues n jobs for one prompt, together: the first is prefilled, the others copy its cache rows and
        decode beside it (candidate i gets make_options(i))."""
        loop = asyncio.get_running_loop()
        first = Job(ids, make_options(0), loop, n_indent=n_indent, time_limit_ms=time_limit_ms, priority=priority,
                    client=client_key(request))
        jobs = [first] + [Job(ids, make_options(i), loop, n_indent=n_indent, time_limit_ms=time_limit_ms,
                              priority=priority, leader=first) for i in range(1, n)]
        try:
            self.engine.submit(*jobs)
        except QueueFull as exc:
            raise ApiError(503, str(exc), "server_busy") from exc
        return jobs

    async def events(self, job: Job, request: Request) -> AsyncIterator[tuple[str, Any]]:
        """The job's ("text", str) events then one ("done", summary); cancels it if the client leaves.
        Reading an event is a plain queue get (a step's events arrive together); one watcher task a job checks
        every DISCONNECT_POLL seconds that the client is still there."""
        finished = False
        watcher = asyncio.create_task(_watch_disconnect(job, request))
        try:
            while True:
                kind, value = await job.events.get()
                if kind == "gone":
                    return
                if kind == "error":
                    finished = True
                    raise ApiError(500, f"generation failed: {value}", "server_error")
                yield kind, value
                if kind == "done":
                    finished = True
                    return
        finally:
            watcher.cancel()
            if not finished:
                job.cancel()

    async def collect(self, job: Job, request: Request) -> tuple[str, dict]:
        """The job's whole text and its summary. Its text is handed over once, with the end (Job.stream)."""
        job.stream = False
        text, summary = [], {"finish_reason": "cancelled", "prompt_tokens": len(job.prompt), "completion_tokens": 0}
        async for kind, value in self.events(job, request):
            if kind == "text":
                text.append(value)
            else:
                summary = value
        return "".join(text), summary


async def candidates(server: Server, request: Request, ids: list[int], make_options: Callable[[int], Options], n: int,
                     **job_args: Any) -> list[tuple[Job, str, dict]]:
    """n answers to one prompt, decoded side by side after one shared prefill (candidate i gets
    make_options(i)); if the client leaves or a newer request supersedes the first, all stop."""
    jobs = server.start_candidates(ids, make_options, n, request, **job_args)
    results = await asyncio.gather(*(server.collect(job, request) for job in jobs))
    return [(job, text, summary) for job, (text, summary) in zip(jobs, results)]


async def _watch_disconnect(job: Job, request: Request) -> None:
    """Tells the job's reader ("gone") when its client has hung up."""
    while not job.ended:
        await asyncio.sleep(DISCONNECT_POLL)
        if await request.is_disconnected():
            job.events.put_nowait(("gone", None))
            return


def client_key(request: Request) -> str:
    host = request.client.host if request.client else ""
    return f"{host}|{request.headers.get('user-agent', '')}|{request.url.path}"


def stream_response(server: Server, job: Job, request: Request, *, piece: Callable[[str], dict],
                    final: Callable[[dict], Iterable[dict]], sse: bool, first: Iterable[dict] = (),
                    done_line: str | None = None) -> StreamingResponse:
    """The one streaming encoder: `first` objects, `piece(text)` per text event, `final(summary)` at the
    end, each framed as SSE (`data: {...}`) or NDJSON, then `done_line` (OpenAI's `data: [DONE]`)."""
    def frame(obj: dict) -> str:
        return f"data: {json.dumps(obj)}\n\n" if sse else json.dumps(obj) + "\n"

    async def lines() -> AsyncIterator[str]:
        for obj in first:
            yield frame(obj)
        async for kind, value in server.events(job, request):
            for obj in ([piece(value)] if kind == "text" else final(value)):
                yield frame(obj)
        if done_line is not None:
            yield done_line

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(lines(), media_type=media, headers={"Cache-Control": "no-cache"})


def get_server(request: Request) -> Server:
    """FastAPI dependency: the Server of the app handling this request."""
    return request.app.state.server


def finish_reason(reason: str) -> str:
    return "stop" if reason in ("stop", "cancelled") else "length"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
