"""The serving engine: one model, one worker thread, a bounded queue, and a KV cache shared across requests.

Requests are served one at a time in arrival order; the KV cache of the previous request stays
attached, and the next request prefills only what follows their longest common token prefix (so a
one-character edit does not re-read the whole file). A request whose client went away is stopped
before its next decoding step.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..api import CodeGemma, Options
from ..errors import CodeGemmaError


class QueueFull(CodeGemmaError):
    """More requests than --parallel admits; the server answers 503."""


@dataclass
class Job:
    prompt: list[int]
    options: Options
    loop: asyncio.AbstractEventLoop
    n_indent: int = 0  # stop at a line indented less than this (llama.cpp's n_indent); 0 = off
    time_limit_ms: float = 0.0  # after this, stop at the next newline (llama.cpp's t_max_predict_ms); 0 = off
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, kind: str, value: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


@dataclass
class Stats:
    requests: int = 0
    cancelled: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0


class IndentStop:
    """Ends the text where a line after the first starts indented less than n_indent columns.

    As llama.cpp's n_indent: the newline before that line is kept, the line itself is cut. Leading
    whitespace of a line is held back until its first other character shows whether it stays.
    """

    def __init__(self, n_indent: int) -> None:
        self.n_indent = n_indent
        self.at_line_start = False  # the first line is never judged
        self.held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        if self.n_indent <= 0:
            return text
        out: list[str] = []
        for c in text:
            if self.stopped:
                break
            if not self.at_line_start:
                out.append(c)
                self.at_line_start = c == "\n"
            elif c in " \t":
                self.held += c
            elif c == "\n":  # blank lines do not count
                out.append(self.held + c)
                self.held = ""
            elif len(self.held.expandtabs(4)) < self.n_indent:
                self.stopped = True
            else:
                out.append(self.held + c)
                self.held, self.at_line_start = "", False
        return "".join(out)

    def flush(self) -> str:
        rest, self.held = ("" if self.stopped else self.held), ""
        return rest


class Engine:
    def __init__(self, cg: CodeGemma, *, ctx: int, parallel: int = 4, prefix_cache: bool = True) -> None:
        self.cg = cg
        self.ctx = ctx
        self.prefix_cache = prefix_cache
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.capacity = max(1, parallel)
        self._admitted = threading.Semaphore(self.capacity)
        self.cached: list[int] = []  # the tokens whose K/V sit in the model's cache, slot by slot
        self._cache = None  # the cache this engine attached to the model (anyone else's is never trusted)
        self.stats = Stats()
        self.recent: collections.deque[list[int]] = collections.deque(maxlen=16)  # prompt ids, newest last
        self.busy = False
        self._thread = threading.Thread(target=self._work, name="codegemma-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        if not self._admitted.acquire(blocking=False):
            raise QueueFull(f"the server is busy ({self.capacity} requests in progress); try again")
        self.recent.append(job.prompt)
        self.jobs.put(job)

    def close(self) -> None:
        """Stops the worker and detaches the KV cache it attached (the model can then be used elsewhere)."""
        self.jobs.put(None)
        self._thread.join(timeout=5)
        if self._cache is not None and self._attached() is self._cache:
            self.cg.model.clear_cache()
        self._cache, self.cached = None, []

    def _attached(self):
        return self.cg.model.model.layers[0].self_attn.cache

    def _work(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.busy = True
                self._run(job)
            except Exception as exc:  # reported to the client; the worker lives on
                self.cached = []
                job.emit("error", str(exc))
            finally:
                self.busy = False
                self._admitted.release()

    def _prepare_cache(self, prompt: list[int]) -> int:
        """Attaches the shared cache if needed and returns how many prompt tokens it already holds."""
        model = self.cg.model
        if self._cache is None or self._attached() is not self._cache:  # not ours, or replaced since
            model.setup_cache(1, self.ctx)
            self._cache, self.cached = self._attached(), []
        if not self.prefix_cache:
            return 0
        n = 0
        for a, b in zip(self.cached, prompt):
            if a != b:
                break
            n += 1
        return min(n, len(prompt) - 1)

    def _run(self, job: Job) -> None:
        self.stats.requests += 1
        if job.cancelled.is_set():
            self.stats.cancelled += 1
            job.emit("done", {"finish_reason": "cancelled", "prompt_tokens": len(job.prompt), "completion_tokens": 0})
            return
        reuse = self._prepare_cache(job.prompt)
        self.stats.reused_tokens += reuse
        self.stats.prefilled_tokens += len(job.prompt) - reuse
        started = time.perf_counter()
        if job.options.max_tokens == 0:  # only fill the cache
            with torch.inference_mode():
                ids = torch.tensor([job.prompt[reuse:]], device=self.cg.device)
                self.cg.model(ids, start=reuse, last=0)
            self.cached = list(job.prompt)
            job.emit("done", self._summary(job, "length", 0, started, reuse))
            return
        self.cached = list(job.prompt[:reuse])  # until generation ends, only this much is certain
        generated: list[int] = []
        indent = IndentStop(job.n_indent)
        reason = "length"
        first: float | None = None  # when the first token came: prefill ends, generation starts
        events = self.cg.stream_ids([job.prompt], job.options, context=self.ctx, reuse=reuse)
        try:
            for ev in events:
                first = first or time.perf_counter()
                if job.cancelled.is_set():
                    reason = "cancelled"
                    self.stats.cancelled += 1
                    break
                generated.append(ev.token)
                text = indent.push(ev.text)
                if ev.finish_reason:
                    reason = ev.finish_reason
                    text += indent.flush()
                if text:
                    job.emit("text", text)
                if indent.stopped:
                    reason = "stop"
                    break
                generating_ms = (time.perf_counter() - first) * 1000  # as llama.cpp: from the first token
                if job.time_limit_ms and generating_ms > job.time_limit_ms and "\n" in text:
                    reason = "length"
                    break
                if ev.finish_reason:
                    break
        finally:
            events.close()
        self.cached = list(job.prompt) + generated[:-1]
        job.emit("done", self._summary(job, reason, len(generated), started, reuse, first))

    def _summary(self, job: Job, reason: str, n: int, started: float, reuse: int,
                 first: float | None = None) -> dict:
        """What a response reports; prompt_seconds is the prefill (until the first token)."""
        end = time.perf_counter()
        return {"finish_reason": reason, "prompt_tokens": len(job.prompt), "completion_tokens": n,
                "cached_tokens": reuse, "seconds": end - started, "prompt_seconds": (first or end) - started}
