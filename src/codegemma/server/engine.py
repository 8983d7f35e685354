"""The serving engine: continuous batching over N cache rows, a priority queue, and prompt caching.

One worker thread owns a KV cache of `parallel` rows (llama.cpp's slots, `-np`). Each loop it seats
waiting requests in free rows, prefills one chunk of one prompt, and then decodes one token for every
row that is generating, all rows in one forward pass (each with its own length, sampling settings and
stop rules; a row's result is the one it gets alone). So a long chat never stalls completions, and a
long prompt is read in chunks between decoding steps.

Priorities: interactive completions first, then chat, then background cache fills (llama.vscode's
`n_predict: 0`), each in arrival order. When every row is busy and an interactive request waits, the
lowest-priority chat or fill is swapped out (its row copied aside) and resumes exactly later. A newer
interactive request from the same client supersedes its queued ones (an editor aborts the previous
completion on each keystroke) whether queued or running, and a request whose client went away gives its
place back at once and stops before its next chunk or step.

Prompt caching: a row keeps the tokens of its last request; a new request takes the free row sharing
the longest prefix with it (or copies that prefix from a busy row, which is how `n` candidates share
one prefill), or a RAM snapshot of an earlier prompt, and prefills only the rest. With `cache_reuse`
(llama.cpp's --cache-reuse), chunks of the old prompt that moved forward in the new one are shifted
into place with their keys re-rotated instead of being computed again.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..api import CodeGemma, Options
from ..errors import CodeGemmaError
from ..generate import RowText, SamplingParams, sample, seeded_generator, tokenizer_safe
from ..generate.speculate import PromptLookup
from ..model import Rows
from ..quantized import KERNEL_ROWS
from .prompt_cache import PromptCache, Snapshot, shared_prefix

logger = logging.getLogger(__name__)

INTERACTIVE, CHAT, BACKGROUND = 0, 1, 2  # job priorities: lower runs first
QUEUE_DEPTH = 512  # requests admitted at once before 503, as Ollama's OLLAMA_MAX_QUEUE
PARALLEL = 4  # sequences decoded together (llama.cpp's -np default)
PREFILL_CHUNK = 128  # prompt tokens per prefill step; decoding and cancellation run between steps
CACHE_RAM = 1 << 30  # bytes of KV snapshots of earlier prompts kept in RAM (llama.cpp's --cache-ram)
DRAFT_ROWS = {1: 7, 2: 4}  # speculative draft rows a decoding pass takes, by sequences in it (none for more);
# at most 8 rows a pass, one group of the kernels' bfloat16 rows


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
    leader: Job | None = None  # a candidate of the same prompt: seated once the leader's prompt is in
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    order: int = 0  # arrival, set by the engine
    prefilled: bool = False  # the prompt is in the cache (set by the engine; followers wait for it)
    ended: bool = False
    stream: bool = True  # False (a reader that wants the whole text): text is held and handed over with the end
    held: list[str] = field(default_factory=list)  # text held while stream is False

    def cancel(self) -> None:
        self.cancelled.set()


def supersedes(new: Job, old: Job) -> bool:
    """A keystroke's request replaces the previous one: both interactive, from the same client, and
    about the same place (their prompts share at least half of the older one's tokens from the start)."""
    if new.client != old.client or new.priority != INTERACTIVE or old.priority != INTERACTIVE:
        return False
    return shared_prefix(new.prompt, old.prompt) >= max(2, len(old.prompt) // 2)


@dataclass
class Stats:
    requests: int = 0
    cancelled: int = 0
    superseded: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    pauses: int = 0  # chats and cache fills swapped out for interactive requests
    snapshot_hits: int = 0  # requests that resumed from a RAM snapshot of an earlier prompt
    shifted_tokens: int = 0  # prompt tokens moved into place by --cache-reuse instead of prefilled
    decode_steps: int = 0  # forward passes that decoded at least one row
    batched_tokens: int = 0  # tokens those passes decoded (/ decode_steps = mean batch)
    drafted_tokens: int = 0  # prompt-lookup draft tokens verified (speculative decoding)
    accepted_tokens: int = 0  # draft tokens the model chose itself: tokens gained without a pass of their own


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


@dataclass(eq=False)
class Seq:
    """A job seated in a cache row (or swapped out of one): its progress and decoding state."""

    job: Job
    text: RowText
    indent: IndentStop
    budget: int  # tokens it may generate: its limit, capped at the room the window leaves
    started: float
    sampling: SamplingParams
    generator: torch.Generator | None
    seen: torch.Tensor | None  # prompt and generated ids, for the repetition penalty
    row: int | None = None
    reuse: int = 0  # prompt tokens found in the cache
    tokens: list[int] = field(default_factory=list)  # what its row's slots hold, in order
    generated: list[int] = field(default_factory=list)
    next: int | None = None  # the token to feed at slot len(tokens); None while prefilling
    first: float | None = None  # when the first token was chosen
    saved: Snapshot | None = None  # its row's slots while swapped out
    lookup: PromptLookup | None = None  # drafts for speculative decoding (None: off)
    speculate: int = 0  # the longest draft

    @property
    def prefill_end(self) -> int:
        """Prompt tokens that prefill writes: all but the last (the first decoding step feeds it), or all of
        them for a cache fill."""
        n = len(self.job.prompt)
        return n - 1 if self.job.options.max_tokens else n


class Engine:
    """Runs jobs on a worker thread: `parallel` rows decoded together, the rest queued by priority."""

    def __init__(self, cg: CodeGemma, *, ctx: int, queue_depth: int = QUEUE_DEPTH, parallel: int = PARALLEL,
                 prefix_cache: bool = True, prefill_chunk: int = PREFILL_CHUNK, cache_ram: int = CACHE_RAM,
                 cache_reuse: int = 0, thread: bool = True) -> None:
        """thread=False: the caller gives a thread to `run()` instead (see run)."""
        self.cg = cg
        self.ctx = ctx
        self.parallel = max(1, parallel)
        self.prefix_cache = prefix_cache
        self.capacity = max(1, queue_depth)
        self.prefill_chunk = max(1, prefill_chunk)
        self.cache_reuse = max(0, cache_reuse)  # shortest chunk worth shifting; 0 = off
        self._lock = threading.Condition()
        self._queue: list[Job] = []  # waiting, in arrival order; picked by (priority, order)
        self._order = itertools.count()
        self._live: set[Job] = set()  # admitted, neither finished nor cancelled
        self._closed = False
        self.closed = threading.Event()  # set by close(), for helpers that live as long as the engine
        self.kv = cg.model.make_cache(self.parallel, ctx, empty=True)  # never attached to the model
        self.rows: list[list[int]] = [[] for _ in range(self.parallel)]  # tokens each row's slots hold
        self.owner: list[Seq | None] = [None] * self.parallel
        self._used = [0.0] * self.parallel  # when each row was last seated, for least-recently-used choice
        self.paused: list[Seq] = []  # swapped out for interactive requests
        self.snapshots = PromptCache(cache_ram) if prefix_cache and cache_ram > 0 else None
        self.stats = Stats()
        self._outbox: dict[asyncio.AbstractEventLoop, list] = {}  # events of this step, by client event loop
        self.recent: collections.deque[list[int]] = collections.deque(maxlen=16)  # prompt ids, newest last
        self._thread = threading.Thread(target=self._work, name="codegemma-engine", daemon=True) if thread else None
        if self._thread is not None:
            self._thread.start()

    # Called from the server's threads.
    def submit(self, *jobs: Job) -> None:
        """Queues jobs (candidates of one prompt come together); a cancelled job's place is free at once.
        Raises QueueFull, and queues none, when really overloaded."""
        with self._lock:
            self._live = {j for j in self._live if not j.cancelled.is_set()}
            if len(self._live) + len(jobs) > self.capacity:
                raise QueueFull(f"the server is busy ({self.capacity} requests waiting); try again")
            for job in jobs:
                if job.client is not None and job.priority == INTERACTIVE:
                    for old in self._queue + [s.job for s in self.owner if s is not None]:
                        if not old.cancelled.is_set() and supersedes(job, old):
                            old.cancel()
                            self.stats.superseded += 1
                job.order = next(self._order)
                self._live.add(job)
                self._queue.append(job)
            self.recent.append(jobs[0].prompt)
            self._lock.notify()

    @property
    def waiting(self) -> int:
        """Jobs queued (or swapped out) and not cancelled."""
        with self._lock:
            return sum(not j.cancelled.is_set() for j in self._queue) + len(self.paused)

    @property
    def busy(self) -> bool:
        return any(s is not None for s in self.owner)

    def slots(self) -> list[dict]:
        """Each row as llama.cpp's /slots shows a slot."""
        return [{"id": r, "n_ctx": self.ctx, "is_processing": s is not None, "n_cached": len(self.rows[r]),
                 "priority": None if s is None else s.job.priority} for r, s in enumerate(self.owner)]

    def close(self) -> None:
        """Stops the worker; every job still queued or running ends as cancelled."""
        self.closed.set()
        with self._lock:
            self._closed = True
            for job in self._queue:
                job.cancel()
            self._lock.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def run(self) -> None:
        """Serves jobs on the calling thread until close(). Give it the thread that loaded the model:
        OpenMP keeps a team of worker threads per calling thread, and where a second team exists (the
        loading thread's, idle) on a machine with as many threads as cores, neither spins between parallel
        regions; measured on 2 cores, a decoding step took 35 ms on the loading thread and 46-57 ms on
        another."""
        self._work()

    # The worker.
    def _work(self) -> None:
        with torch.no_grad():  # (run() lends the caller's thread: its grad mode is left as it was)
            while self._wait_for_work():
                try:
                    self._drop_cancelled()
                    self._admit()
                    if self._prefill_step():
                        self._start_ready()
                        self._admit()  # candidates waiting for this prompt join its first decoding step
                    self._start_ready()
                    self._decode_step()
                except Exception as exc:  # a bug of the engine itself: the seated requests end with it, serving goes on
                    logger.exception("engine step failed")
                    self._fail([s for s in self.owner if s is not None], exc)
                self._flush()
            self._drop_cancelled()
            for seq in [s for s in self.owner if s is not None] + self.paused:
                seq.job.cancel()
                self._finish(seq, "cancelled")
            self._flush()

    def _wait_for_work(self) -> bool:
        with self._lock:
            while not self._closed and not self._queue and not self.paused and not self.busy:
                self._lock.wait()
            return not self._closed

    def _drop_cancelled(self) -> None:
        """Cancelled jobs leave: queued ones answer at once, seated ones free their row (keeping what it holds)."""
        with self._lock:
            queued = list(self._queue)
        for job in [s.job for s in self.owner if s is not None] + [s.job for s in self.paused] + queued:
            if job.leader is not None and job.leader.cancelled.is_set():
                job.cancel()  # candidates go with the first
        with self._lock:
            gone = [j for j in self._queue if j.cancelled.is_set()]
            self._queue = [j for j in self._queue if not j.cancelled.is_set()]
        for job in gone:
            self.stats.requests += 1
            self.stats.cancelled += 1
            self._emit_done(job, self._summary(job, "cancelled", 0, time.perf_counter(), 0))
        for seq in [s for s in self.owner if s is not None] + self.paused:
            if seq.job.cancelled.is_set():
                self._finish(seq, "cancelled")

    def _next_waiting(self) -> Job | Seq | None:
        """The waiting job or swapped-out sequence to seat next: by priority, then arrival. A candidate
        waits until its leader's prompt is in the cache, so all candidates share one prefill."""
        with self._lock:
            ready = [j for j in self._queue
                     if j.leader is None or j.leader.prefilled or j.leader.ended or j.leader.cancelled.is_set()]
        options: list[Job | Seq] = ready + self.paused
        return min(options, key=lambda x: (_job(x).priority, _job(x).order), default=None)

    def _admit(self) -> None:
        while (item := self._next_waiting()) is not None:
            row = self._free_row(_job(item).prompt)
            if row is None and _job(item).priority == INTERACTIVE:
                row = self._swap_out_for_interactive()
            if row is None:
                return
            if isinstance(item, Seq):
                self.paused.remove(item)
                self._resume(item, row)
            else:
                with self._lock:
                    self._queue.remove(item)
                self._seat(item, row)

    def _free_row(self, prompt: list[int]) -> int | None:
        """The free row sharing the longest prefix with `prompt`, else the least recently used one."""
        free = [r for r, s in enumerate(self.owner) if s is None]
        if not free:
            return None
        return max(free, key=lambda r: (shared_prefix(self.rows[r], prompt), -self._used[r]))

    def _swap_out_for_interactive(self) -> int | None:
        """Copies the lowest-priority, newest chat or cache fill out of its row, which it gives up."""
        victims = [s for s in self.owner if s is not None and s.job.priority != INTERACTIVE]
        if not victims:
            return None
        seq = max(victims, key=lambda s: (s.job.priority, s.job.order))
        row = seq.row
        seq.saved = self._copy_row(row, len(seq.tokens))
        self.owner[row], seq.row = None, None
        self.paused.append(seq)
        self.stats.pauses += 1
        return row

    def _resume(self, seq: Seq, row: int) -> None:
        self._save_row(row, seq.tokens)
        self._put_row(row, seq.saved)
        seq.saved, seq.row = None, row
        self.owner[row], self.rows[row], self._used[row] = seq, list(seq.tokens), time.perf_counter()

    def _seat(self, job: Job, row: int) -> None:
        self.stats.requests += 1
        started = time.perf_counter()
        opts = job.options
        settings = self.cg.settings(opts)
        try:
            tokenizer_safe([job.prompt], self.cg.tokenizer)
            if not 0 < len(job.prompt) <= self.ctx:
                raise ValueError(f"the prompt has {len(job.prompt)} tokens; the context window is {self.ctx}")
        except ValueError as exc:
            self._fail([job], exc)
            return
        penalised = opts.repetition_penalty != 1.0
        seq = Seq(job, RowText(self.cg.tokenizer, settings.stop_ids, opts.stop), IndentStop(job.n_indent),
                  budget=min(opts.max_tokens, self.ctx - len(job.prompt)), started=started,
                  sampling=settings.sampling, generator=seeded_generator(opts.seed, self.cg.device),
                  seen=torch.tensor([job.prompt], device=self.cg.device) if penalised else None, row=row,
                  speculate=settings.speculate)
        if settings.speculate:
            seq.lookup = PromptLookup(job.prompt, settings.speculate)
        self.owner[row], self._used[row] = seq, started
        seq.reuse = self._prepare_row(row, job.prompt, seq.prefill_end) if self.prefix_cache else 0
        seq.tokens = self.rows[row] = list(job.prompt[:seq.reuse])
        self.stats.reused_tokens += seq.reuse

    # Prompt caching.
    def _prepare_row(self, row: int, prompt: list[int], limit: int) -> int:
        """Puts the longest cached prefix of `prompt` into `row` (from the row itself, another row, or a RAM
        snapshot; then chunks shifted into place with cache_reuse); returns how many tokens it holds, at
        most `limit`."""
        shares = [shared_prefix(tokens, prompt) for tokens in self.rows]  # busy rows only append: theirs stay
        n = shares[row]
        source = max((r for r in range(self.parallel) if r != row), key=shares.__getitem__, default=None)
        from_row = 0 if source is None else shares[source]
        found = self.snapshots.best(prompt) if self.snapshots is not None else None
        if max(from_row, found[2] if found else 0) > n:
            self._save_row(row, prompt)
            if found is not None and found[2] >= from_row:
                tokens, snapshot, n = found
                self._put_row(row, snapshot)
                self.rows[row] = tokens
                self.stats.snapshot_hits += 1
            else:
                n = from_row
                self._copy_between(source, row, n)
                self.rows[row] = prompt[:n]
        elif n < len(self.rows[row]) // 2:
            self._save_row(row, prompt)
        n = min(n, limit)
        if self.cache_reuse:
            n = self._shift_chunks(row, prompt, n, limit)
        return n

    def _shift_chunks(self, row: int, prompt: list[int], n: int, limit: int) -> int:
        """llama.cpp's cache reuse: past the shared prefix, each run of at least cache_reuse tokens that the
        row holds further on and the prompt wants here is moved into place (keys re-rotated)."""
        cached = self.rows[row]
        head_c = head_p = n
        while head_c < len(cached) and head_p < limit:
            m = 0
            while head_c + m < len(cached) and head_p + m < limit and cached[head_c + m] == prompt[head_p + m]:
                m += 1
            if m >= self.cache_reuse:
                if head_c != head_p:
                    self.cg.model.move_slots(self.kv, row, head_c, head_p, m)
                self.stats.shifted_tokens += m
                head_c, head_p = head_c + m, head_p + m
            else:
                head_c += 1
        self.rows[row] = prompt[:head_p]
        return head_p

    def _save_row(self, row: int, prompt: list[int]) -> None:
        """Before a row is overwritten by a prompt that keeps less than half of it, its slots go to RAM."""
        held = self.rows[row]
        if self.snapshots is not None and held and shared_prefix(held, prompt) < len(held) // 2:
            self.snapshots.put(list(held), self._copy_row(row, len(held)))

    def _copy_row(self, row: int, n: int) -> Snapshot:
        return [(kv.k[row:row + 1, :, :n].clone(), kv.v[row:row + 1, :, :n].clone()) for kv in self.kv]

    def _put_row(self, row: int, snapshot: Snapshot) -> None:
        for kv, (k, v) in zip(self.kv, snapshot):
            kv.k[row:row + 1, :, :k.shape[2]] = k
            kv.v[row:row + 1, :, :v.shape[2]] = v

    def _copy_between(self, src: int, dst: int, n: int) -> None:
        for kv in self.kv:
            kv.k[dst, :, :n] = kv.k[src, :, :n]
            kv.v[dst, :, :n] = kv.v[src, :, :n]

    # Steps.
    def _prefill_step(self) -> bool:
        """One chunk of the most urgent prompt still being read; True when that prompt is now all in."""
        waiting = [s for s in self.owner if s is not None and s.next is None and len(s.tokens) < s.prefill_end]
        if not waiting:
            return False
        seq = min(waiting, key=lambda s: (s.job.priority, s.job.order))
        pos = len(seq.tokens)
        stop = min(pos + self.prefill_chunk, seq.prefill_end)
        try:
            ids = torch.tensor([seq.job.prompt[pos:stop]], device=self.cg.device)
            with torch.inference_mode():
                self.cg.model(ids, start=pos, last=0, cache=self.kv, row=seq.row)
        except Exception as exc:
            self._fail([seq], exc)
            return False
        self.stats.prefilled_tokens += stop - pos
        seq.tokens = self.rows[seq.row] = list(seq.job.prompt[:stop])
        return stop == seq.prefill_end

    def _start_ready(self) -> None:
        """Rows whose prompt is all in the cache start decoding (a cache fill is done then)."""
        for seq in [s for s in self.owner if s is not None and s.next is None and len(s.tokens) >= s.prefill_end]:
            seq.job.prefilled = True
            if seq.job.options.max_tokens == 0 or seq.budget == 0:  # a cache fill, or no room left
                self._finish(seq, "length")
            else:
                seq.next = seq.job.prompt[-1]

    def _decode_step(self) -> None:
        """One token for every generating row, in one forward pass; with speculative decoding, also each
        row's draft, as more rows of the same pass (each computed as it is alone: the kernels' rows never
        mix), and every drafted token the row's own choice agrees with is kept."""
        seqs = [s for s in self.owner if s is not None and s.next is not None]
        if not seqs:
            return
        # Draft rows pay where the pass is small: a pass of several sequences is already more compute than
        # memory, and their drafts slowed it down (bench_server: 4 clients 158 -> 137 tokens/s with drafts).
        room = min(KERNEL_ROWS - len(seqs), DRAFT_ROWS.get(len(seqs), 0))
        feeds, positions, rows = [], [], []
        for seq in seqs:
            draft: list[int] = []
            if seq.lookup is not None and room > 0:
                left = min(seq.budget - len(seq.generated), self.ctx - len(seq.tokens)) - 1
                draft = seq.lookup.draft(min(seq.speculate, left, room))
                room -= len(draft)
            feeds.append([seq.next, *draft])
            start = len(seq.tokens)
            positions += range(start, start + 1 + len(draft))
            rows += [seq.row] * (1 + len(draft))
        try:
            with torch.inference_mode():
                logits = self.cg.model.decode_rows([t for feed in feeds for t in feed], Rows(tuple(rows),
                                                                                         tuple(positions)), self.kv)
        except Exception as exc:
            self._fail(seqs, exc)
            return
        self.stats.decode_steps += 1
        self.stats.batched_tokens += len(positions)
        # greedy rows without a repetition penalty take the argmax of all rows, computed once
        plain = [s.sampling.greedy and s.seen is None for s in seqs]
        best = logits.argmax(-1).tolist() if any(plain) else []
        first = 0
        for seq, feed, greedy in zip(seqs, feeds, plain):
            span = slice(first, first + len(feed))
            try:
                self._choose(seq, feed, logits[span], best[span] if greedy else None)
            except Exception as exc:  # this row's sampling or text failed: it alone ends, with the error
                self._fail([seq], exc)
            first += len(feed)

    def _choose(self, seq: Seq, feed: list[int], logits: torch.Tensor, best: list[int] | None) -> None:
        """A row's tokens from its rows of a decoding pass (best: their argmax, for plain greedy rows): the
        fed token joins its slots, then each drafted token the row's own choice agrees with."""
        seq.tokens.append(seq.next)
        self.rows[seq.row] = seq.tokens
        kept = 0
        for j in range(len(feed)):
            token = best[j] if best is not None else int(sample(logits[j:j + 1], seq.sampling, seen=seq.seen,
                                                                generator=seq.generator)[0])
            self._take(seq, token)
            if self.owner[seq.row] is not seq or j + 1 == len(feed) or token != feed[j + 1]:
                break  # finished, or no draft left, or the draft went another way
            kept += 1  # the drafted token is this row's own choice, and its slot is already written
            seq.tokens.append(token)
        if seq.lookup is not None:
            seq.lookup.verified(len(feed) - 1, kept)
        self.stats.drafted_tokens += len(feed) - 1
        self.stats.accepted_tokens += kept

    def _take(self, seq: Seq, token: int) -> None:
        """A row's new token: its text, then whether it ends the row (stop token or string, limit, indent,
        time limit) or is fed next."""
        now = time.perf_counter()
        seq.first = seq.first or now
        seq.generated.append(token)
        if seq.lookup is not None:
            seq.lookup.append(token)
        self.stats.generated_tokens += 1
        reason = ("stop" if token in seq.text.stop_ids else
                  "length" if len(seq.generated) >= seq.budget else None)
        text, reason = seq.text.push(token, reason)
        text = seq.indent.push(text)
        if reason:
            text += seq.indent.flush()
        if seq.indent.stopped:
            reason = "stop"
        generating_ms = (now - seq.first) * 1000  # as llama.cpp: from the first token
        if not reason and seq.job.time_limit_ms and generating_ms > seq.job.time_limit_ms and "\n" in text:
            reason = "length"
        if text:
            self._send(seq.job, "text", text)
        if reason:
            self._finish(seq, reason)
            return
        seq.next = token
        if seq.seen is not None:
            seq.seen = torch.cat([seq.seen, torch.tensor([[token]], device=seq.seen.device)], dim=1)

    def _finish(self, seq: Seq, reason: str) -> None:
        """Ends a sequence; its row keeps the tokens its slots hold for the next request."""
        if seq.row is not None:
            self.owner[seq.row] = None
            self.rows[seq.row] = list(seq.tokens)
        if seq in self.paused:
            self.paused.remove(seq)
        if reason == "cancelled":
            self.stats.cancelled += 1
        self._emit_done(seq.job, self._summary(seq.job, reason, len(seq.generated), seq.started, seq.reuse,
                                               seq.first))

    def _fail(self, seqs: list[Seq] | list[Job], exc: Exception) -> None:
        """A failure inside the engine: logged with its traceback, reported to each job it touched."""
        logger.error("generation failed (%d sequence(s))", len(seqs), exc_info=exc)
        for item in seqs:
            job = _job(item)
            if isinstance(item, Seq) and item.row is not None:
                self.owner[item.row] = None
                self.rows[item.row] = []  # what the row holds is unknown now
            job.ended = True
            self._send(job, "error", str(exc))
            with self._lock:
                self._live.discard(job)

    def _send(self, job: Job, kind: str, value: Any) -> None:
        """Queues an event for the job's client; _flush hands a step's events over in one wake-up per event
        loop (not one per token of each sequence: with four sequences decoding, four wake-ups a step). The
        text of a job whose reader wants it whole waits for the end: no wake-up of the HTTP thread per step."""
        if kind == "text" and not job.stream:
            job.held.append(value)
            return
        events = self._outbox.setdefault(job.loop, [])
        if kind == "done" and job.held:
            events.append((job.events, ("text", "".join(job.held))))
            job.held.clear()
        events.append((job.events, (kind, value)))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for loop, events in outbox.items():
            try:
                loop.call_soon_threadsafe(_deliver, events)
            except RuntimeError:  # that client's event loop has closed: nobody is listening
                pass

    def _emit_done(self, job: Job, summary: dict) -> None:
        job.ended = True
        self._send(job, "done", summary)
        with self._lock:
            self._live.discard(job)

    @staticmethod
    def _summary(job: Job, reason: str, n: int, started: float, reuse: int, first: float | None = None) -> dict:
        """What a response reports; prompt_seconds is the prefill (until the first token)."""
        end = time.perf_counter()
        return {"finish_reason": reason, "prompt_tokens": len(job.prompt), "completion_tokens": n,
                "cached_tokens": reuse, "seconds": end - started, "prompt_seconds": (first or end) - started}


def _deliver(events: list[tuple[asyncio.Queue, tuple[str, Any]]]) -> None:
    for queue, event in events:
        queue.put_nowait(event)


def _job(item: Job | Seq) -> Job:
    return item.job if isinstance(item, Seq) else item
