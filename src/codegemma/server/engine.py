"""The serving engine: one model, one worker thread, a priority queue, and a KV cache shared across requests.

Requests are served one at a time: interactive completions first, then chat, then background cache
fills (llama.vscode's `n_predict: 0`), each in arrival order; a chat or a fill in progress pauses
between two steps while interactive requests run, and resumes exactly. A newer interactive request from the
same client supersedes its queued ones (an editor aborts the previous completion on each keystroke),
and a request whose client went away gives its place back at once. The KV cache of the previous
request stays attached, and the next request prefills only what follows their longest common token
prefix (so a one-character edit does not re-read the whole file); prefill runs in chunks, and a
cancelled request stops between chunks or before its next decoding step.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..api import CodeGemma, Options
from ..errors import CodeGemmaError
from .prompt_cache import PromptCache, Snapshot, shared_prefix

logger = logging.getLogger(__name__)

INTERACTIVE, CHAT, BACKGROUND = 0, 1, 2  # job priorities: lower runs first
QUEUE_DEPTH = 512  # requests admitted at once before 503, as Ollama's OLLAMA_MAX_QUEUE
PREFILL_CHUNK = 256  # prompt tokens per prefill step; cancellation is checked between steps
CACHE_RAM = 1 << 30  # bytes of KV snapshots of earlier prompts kept in RAM (llama.cpp's --cache-ram)


class QueueFull(CodeGemmaError):
    """More requests waiting than the queue holds; the server answers 503."""


@dataclass(eq=False)
class Job:
    prompt: list[int]
    options: Options
    loop: asyncio.AbstractEventLoop
    n_indent: int = 0  # stop at a line indented less than this (llama.cpp's n_indent); 0 = off
    time_limit_ms: float = 0.0  # after this, stop at the next newline (llama.cpp's t_max_predict_ms); 0 = off
    priority: int = INTERACTIVE
    client: str | None = None  # interactive requests of one client supersede each other
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, kind: str, value: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

    def cancel(self) -> None:
        self.cancelled.set()


def supersedes(new: Job, old: Job) -> bool:
    """A keystroke's request replaces the previous one: both interactive, from the same client, and
    about the same place (their prompts share at least half of the older one's tokens from the start)."""
    if new.client != old.client or new.priority != INTERACTIVE or old.priority != INTERACTIVE:
        return False
    shared = next((i for i, (a, b) in enumerate(zip(new.prompt, old.prompt)) if a != b),
                  min(len(new.prompt), len(old.prompt)))
    return shared >= max(2, len(old.prompt) // 2)


@dataclass
class Stats:
    requests: int = 0
    cancelled: int = 0
    superseded: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    pauses: int = 0  # chats and cache fills paused for interactive requests
    snapshot_hits: int = 0  # requests that resumed from a RAM snapshot of an earlier prompt


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
    """Runs jobs on a worker thread, in priority order, over one attached KV cache."""

    def __init__(self, cg: CodeGemma, *, ctx: int, queue_depth: int = QUEUE_DEPTH, prefix_cache: bool = True,
                 prefill_chunk: int = PREFILL_CHUNK, cache_ram: int = CACHE_RAM) -> None:
        self.cg = cg
        self.ctx = ctx
        self.prefix_cache = prefix_cache
        self.capacity = max(1, queue_depth)
        self.prefill_chunk = max(1, prefill_chunk)
        self._lock = threading.Condition()
        self._heap: list[tuple[int, int, Job]] = []
        self._order = itertools.count()
        self._live: set[Job] = set()  # admitted, neither finished nor cancelled
        self._closed = False
        self.cached: list[int] = []  # the tokens whose K/V sit in the model's cache, slot by slot
        self._cache = None  # the cache this engine attached to the model (anyone else's is never trusted)
        self.snapshots = PromptCache(cache_ram) if prefix_cache and cache_ram > 0 else None
        self.stats = Stats()
        self.recent: collections.deque[list[int]] = collections.deque(maxlen=16)  # prompt ids, newest last
        self.busy = False
        self._thread = threading.Thread(target=self._work, name="codegemma-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queues a job; a cancelled job's place is free at once. Raises QueueFull when really overloaded."""
        with self._lock:
            self._live = {j for j in self._live if not j.cancelled.is_set()}
            if len(self._live) >= self.capacity:
                raise QueueFull(f"the server is busy ({self.capacity} requests waiting); try again")
            if job.client is not None and job.priority == INTERACTIVE:
                for _, _, old in self._heap:
                    if not old.cancelled.is_set() and supersedes(job, old):
                        old.cancel()
                        self.stats.superseded += 1
            self.recent.append(job.prompt)
            self._live.add(job)
            heapq.heappush(self._heap, (job.priority, next(self._order), job))
            self._lock.notify()

    @property
    def waiting(self) -> int:
        """Jobs queued and not cancelled."""
        with self._lock:
            return sum(not j.cancelled.is_set() for _, _, j in self._heap)

    def close(self) -> None:
        """Stops the worker and detaches the KV cache it attached (the model can then be used elsewhere)."""
        with self._lock:
            self._closed = True
            for _, _, job in self._heap:
                job.cancel()
            self._lock.notify()
        self._thread.join(timeout=5)
        if self._cache is not None and self._attached() is self._cache:
            self.cg.model.clear_cache()
        self._cache, self.cached = None, []

    def _next(self) -> Job | None:
        with self._lock:
            while not self._heap and not self._closed:
                self._lock.wait()
            return heapq.heappop(self._heap)[2] if self._heap else None

    def _work(self) -> None:
        torch.set_grad_enabled(False)
        while (job := self._next()) is not None:
            self.busy = True
            self._run_one(job)
            self.busy = False

    def _run_one(self, job: Job) -> None:
        try:
            self._run(job)
        except Exception as exc:  # reported to the client; the worker lives on
            logger.exception("generation failed (prompt of %d tokens)", len(job.prompt))
            self.cached = []
            job.emit("error", str(exc))
        finally:
            with self._lock:
                self._live.discard(job)

    def _interactive_waiting(self) -> bool:
        with self._lock:
            return any(j.priority == INTERACTIVE and not j.cancelled.is_set() for _, _, j in self._heap)

    def _pop_interactive(self) -> Job | None:
        with self._lock:
            return heapq.heappop(self._heap)[2] if self._heap and self._heap[0][0] == INTERACTIVE else None

    def _yield_to_interactive(self, slots: int) -> None:
        """Pauses a chat or a cache fill between two steps so that completions never wait behind it: its
        first `slots` cache slots are copied aside, the waiting interactive jobs run, and the copy is put
        back, so the paused job resumes exactly where it was."""
        saved, cached = self._copy_slots(slots), self.cached
        while (other := self._pop_interactive()) is not None:
            self._run_one(other)
        self._put_slots(saved)
        self.cached = cached[:slots]  # slots past the copy may hold the other jobs' tokens now
        self.stats.pauses += 1

    def _maybe_pause(self, job: Job, slots: int) -> None:
        if job.priority != INTERACTIVE and self._interactive_waiting():
            self._yield_to_interactive(slots)

    def _attached(self):
        return self.cg.model.model.layers[0].self_attn.cache

    def _prepare_cache(self, prompt: list[int]) -> int:
        """Attaches the shared cache if needed and returns how many prompt tokens it already holds: from
        the live cache, or from a RAM snapshot of an earlier prompt if that one shares more."""
        model = self.cg.model
        if self._cache is None or self._attached() is not self._cache:  # not ours, or replaced since
            model.setup_cache(1, self.ctx)
            self._cache, self.cached = self._attached(), []
        if not self.prefix_cache:
            return 0
        n = shared_prefix(self.cached, prompt)
        if self.snapshots is not None:
            found = self.snapshots.best(prompt)
            if n < len(self.cached) // 2:  # moving away from the live prompt: keep it for later
                self.snapshots.put(self.cached, self._copy_slots(len(self.cached)))
            if found is not None and found[2] > n:
                tokens, snapshot, n = found
                self._put_slots(snapshot)
                self.cached = tokens
                self.stats.snapshot_hits += 1
        return min(n, len(prompt) - 1)

    def _copy_slots(self, n: int) -> Snapshot:
        return [(b.self_attn.cache.k[:, :, :n].clone(), b.self_attn.cache.v[:, :, :n].clone())
                for b in self.cg.model.model.layers]

    def _put_slots(self, snapshot: Snapshot) -> None:
        for b, (k, v) in zip(self.cg.model.model.layers, snapshot):
            b.self_attn.cache.k[:, :, :k.shape[2]] = k
            b.self_attn.cache.v[:, :, :v.shape[2]] = v

    def _run(self, job: Job) -> None:
        self.stats.requests += 1
        started = time.perf_counter()
        reuse = self._prepare_cache(job.prompt) if not job.cancelled.is_set() else 0
        # all but the last prompt token now (the decoding loop feeds that one); a cache fill takes them all
        filled = self._prefill(job, reuse, len(job.prompt) - (1 if job.options.max_tokens else 0))
        self.stats.reused_tokens += reuse
        self.stats.prefilled_tokens += filled - reuse
        if job.cancelled.is_set():
            self.stats.cancelled += 1
            job.emit("done", self._summary(job, "cancelled", 0, started, reuse))
            return
        if job.options.max_tokens == 0:  # only fill the cache
            job.emit("done", self._summary(job, "length", 0, started, reuse))
            return
        self.cached = list(job.prompt[:filled])  # until generation ends, only this much is certain
        generated: list[int] = []
        indent = IndentStop(job.n_indent)
        reason = "length"
        first: float | None = None  # when the first token came: prefill ends, generation starts
        events = self.cg.stream_ids([job.prompt], job.options, context=self.ctx, reuse=filled)
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
                self._maybe_pause(job, len(job.prompt) + len(generated) - 1)  # the last token is not in yet
        finally:
            events.close()
        self.cached = list(job.prompt) + generated[:-1]
        self.stats.generated_tokens += len(generated)
        job.emit("done", self._summary(job, reason, len(generated), started, reuse, first))

    def _prefill(self, job: Job, start: int, end: int) -> int:
        """Prompt tokens [start, end) into the cache, PREFILL_CHUNK at a time; stops early if the job is
        cancelled. Returns how far the cache now holds the prompt (kept for the next request)."""
        pos = start
        with torch.inference_mode():
            while pos < end and not job.cancelled.is_set():
                self._maybe_pause(job, pos)
                stop = min(pos + self.prefill_chunk, end)
                ids = torch.tensor([job.prompt[pos:stop]], device=self.cg.device)
                self.cg.model(ids, start=pos, last=0)
                pos = stop
                self.cached = list(job.prompt[:pos])
        return pos

    def _summary(self, job: Job, reason: str, n: int, started: float, reuse: int,
                 first: float | None = None) -> dict:
        """What a response reports; prompt_seconds is the prefill (until the first token)."""
        end = time.perf_counter()
        return {"finish_reason": reason, "prompt_tokens": len(job.prompt), "completion_tokens": n,
                "cached_tokens": reuse, "seconds": end - started, "prompt_seconds": (first or end) - started}
