"""The server under editor traffic: newest wins, priorities, supersession, places freed at once, candidates."""

from __future__ import annotations

import asyncio
import json
import socket
import sysconfig
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from codegemma import load
from codegemma.api import Options
from codegemma.server import create_app
from codegemma.server.engine import BACKGROUND, CHAT, INTERACTIVE, Engine, Job, QueueFull
from test_server import PREFIX, SUFFIX, LiveServer


@pytest.fixture(scope="module")
def cg(tiny_checkpoint):
    return load(tiny_checkpoint)


def run_jobs(engine: Engine, specs: list[tuple[list[int], int, str | None, int]]) -> list[tuple[int, str]]:
    """Submits a long blocker, then the given jobs (prompt, priority, client, max_tokens) while it runs;
    returns (spec index, finish reason) in the order the jobs finished."""
    async def main() -> list[tuple[int, str]]:
        loop = asyncio.get_running_loop()
        blocker = Job([2] + [5] * 40, Options(max_tokens=200), loop)
        engine.submit(blocker)
        while not engine.busy:
            await asyncio.sleep(0.001)
        jobs = [Job(p, Options(max_tokens=n), loop, priority=prio, client=client) for p, prio, client, n in specs]
        for job in jobs:
            engine.submit(job)
        order = []

        async def wait(i: int, job: Job) -> None:
            while True:
                kind, value = await job.events.get()
                if kind == "done":
                    order.append((i, value["finish_reason"]))
                    return

        await asyncio.gather(wait(-1, blocker), *(wait(i, j) for i, j in enumerate(jobs)))
        return order

    return asyncio.run(main())


def test_interactive_goes_before_chat_and_chat_before_background_fills(cg):
    engine = Engine(cg, ctx=256, parallel=1)
    try:
        order = run_jobs(engine, [([2, 7, 8], BACKGROUND, None, 0), ([2, 9, 10], CHAT, None, 4),
                                  ([2, 11, 12], INTERACTIVE, None, 4), ([2, 13], INTERACTIVE, None, 4)])
    finally:
        engine.close()
    assert [i for i, _ in order] == [-1, 2, 3, 1, 0]


def test_a_newer_request_from_the_same_client_supersedes_its_queued_ones(cg):
    file = [2] + list(range(20, 60))
    engine = Engine(cg, ctx=256, parallel=1)
    try:
        order = run_jobs(engine, [(file + [61], INTERACTIVE, "editor", 4), (file + [61, 62], INTERACTIVE, "editor", 4),
                                  (file + [61, 62, 63], INTERACTIVE, "editor", 4),
                                  ([2, 99, 98], INTERACTIVE, "editor", 4),  # another place: not superseded
                                  (file + [64], INTERACTIVE, "other editor", 4)])
    finally:
        engine.close()
    reasons = dict(order)
    assert reasons[0] == reasons[1] == "cancelled" and engine.stats.superseded == 2
    assert reasons[2] != "cancelled" and reasons[3] != "cancelled" and reasons[4] != "cancelled"


def test_a_cancelled_request_gives_its_place_back_at_once(cg):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = Engine(cg, ctx=256, queue_depth=2, parallel=1)
        try:
            engine.submit(Job([2] + [5] * 40, Options(max_tokens=200), loop))
            queued = Job([2, 6], Options(max_tokens=4), loop)
            engine.submit(queued)
            with pytest.raises(QueueFull):
                engine.submit(Job([2, 7], Options(max_tokens=4), loop))
            queued.cancel()  # its client went away
            engine.submit(Job([2, 7], Options(max_tokens=4), loop))
        finally:
            engine.close()

    asyncio.run(main())


def test_prefill_in_chunks_equals_one_prefill(cg):
    """Chunked prefill (and a prompt cache that holds part of the prompt) gives the same greedy text."""
    ids = cg.tokenizer.encode("import os\nimport sys\n\n" * 12 + "def main():\n    ")
    alone = cg.run([ids], Options(max_tokens=16))[0].token_ids

    async def main() -> list[int]:
        engine = Engine(cg, ctx=256, prefill_chunk=7)
        try:
            out = []
            for prompt in (ids[:50], ids):  # the second reuses the first's cache, then prefills in chunks
                job = Job(prompt, Options(max_tokens=16), asyncio.get_running_loop())
                engine.submit(job)
                tokens = []
                while (event := await job.events.get())[0] != "done":
                    tokens.append(event[1])
                out = tokens
            return out
        finally:
            engine.close()

    text = "".join(asyncio.run(main()))
    assert text == cg.tokenizer.decode([t for t in alone if t not in (1,)])


def raw_request(port: int, path: str, body: dict) -> socket.socket:
    """Sends a request and leaves the connection open (closing it is how an editor aborts)."""
    sock = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"User-Agent: keystrokes\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_keystroke_storm_the_newest_is_answered_as_if_alone(default_model):
    """Six keystrokes 100 ms apart, each aborting the previous request (as Continue, llama.vim and
    llama.vscode do): the newest is answered, never 503, with the text it gets alone; the rest stop."""
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()[:2500]
    server = LiveServer(create_app(default_model, name="default", ctx=1024, queue=3))
    try:
        engine = server.engine
        sock = None
        for k in range(5):
            if sock is not None:
                sock.close()
            sock = raw_request(server.port, "/infill", {"input_prefix": source[:2000 + 10 * k],
                                                        "input_suffix": "\n", "n_predict": 16})
            time.sleep(0.1)
        sock.close()
        body = {"input_prefix": source[:2050], "input_suffix": "\n", "n_predict": 16}
        started = time.perf_counter()
        newest = httpx.post(f"{server.url}/infill", json=body, headers={"User-Agent": "keystrokes"}, timeout=120)
        storm_seconds = time.perf_counter() - started
        assert newest.status_code == 200
        deadline = time.time() + 10
        while engine.busy and time.time() < deadline:
            time.sleep(0.01)
        assert engine.stats.cancelled >= 3  # the aborted ones stopped (in prefill, or before it)
        alone = default_model.complete(source[:2050], "\n", max_tokens=16)
        assert newest.json()["content"] == alone
        assert storm_seconds < 60
    finally:
        server.stop()


def test_candidates_and_server_info_routes(cg):
    server = LiveServer(create_app(cg, name="tiny", ctx=256))
    try:
        body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 8, "n_cmpl": 3}
        answers = httpx.post(f"{server.url}/infill", json=body, timeout=60).json()
        alone = cg.complete(PREFIX, SUFFIX, max_tokens=8)
        assert [a["index"] for a in answers] == [0, 1, 2] and all(a["content"] == alone for a in answers)
        assert answers[1]["tokens_cached"] >= answers[1]["tokens_evaluated"] - 1  # one prefill for all three
        stats = server.engine.stats
        assert stats.prefilled_tokens == answers[0]["tokens_evaluated"] - 1  # the last one is decoding's first input
        assert stats.batched_tokens >= 2 * stats.decode_steps  # decoded side by side
        assert httpx.post(f"{server.url}/infill", json={**body, "stream": True}).status_code == 400
        props = httpx.get(f"{server.url}/props").json()
        assert props["default_generation_settings"]["n_ctx"] == 256 and props["total_slots"] == 4
        slots = httpx.get(f"{server.url}/slots").json()
        assert len(slots) == 4 and all(s["n_ctx"] == 256 and s["is_processing"] is False for s in slots)
        held = answers[0]["tokens_evaluated"] + answers[0]["tokens_predicted"] - 1  # all but the last token
        assert sorted(s["n_cached"] for s in slots) == [0, held, held, held]
        metrics = httpx.get(f"{server.url}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        values = dict(line.split() for line in metrics.text.splitlines() if not line.startswith("#"))
        assert int(values["llamacpp:tokens_predicted_total"]) == sum(a["tokens_predicted"] for a in answers)
        ps = httpx.get(f"{server.url}/api/ps").json()
        assert ps["models"][0]["name"] == "tiny" and "expires_at" in ps["models"][0]
    finally:
        server.stop()


def test_engine_failures_are_logged_with_their_traceback(cg, caplog):
    async def main() -> tuple[str, object]:
        engine = Engine(cg, ctx=256)
        try:
            job = Job([2, cg.tokenizer.vocab_size + 5], Options(max_tokens=2), asyncio.get_running_loop())
            engine.submit(job)
            return await job.events.get()
        finally:
            engine.close()

    with caplog.at_level("ERROR", logger="codegemma.server.engine"):
        kind, message = asyncio.run(main())
    assert kind == "error" and "outside the vocabulary" in message
    assert any(r.exc_info for r in caplog.records if "generation failed" in r.getMessage())


def test_threads_do_not_leak(cg):
    before = threading.active_count()
    app = create_app(cg, name="tiny", ctx=64)
    app.app.state.server.engine.close()
    assert threading.active_count() == before


def test_a_long_chat_loses_its_oldest_exchanges_like_ollama(cg):
    server = LiveServer(create_app(cg, name="tiny", ctx=256))
    try:
        system = {"role": "system", "content": "be brief"}
        history = []
        for i in range(12):
            history += [{"role": "user", "content": f"question {i} " + "word " * 12},
                        {"role": "assistant", "content": f"answer {i} " + "word " * 12}]
        messages = [system, *history, {"role": "user", "content": "last question"}]
        assert len(cg.chat_ids(messages)) > 256  # over the window: Ollama cuts, never refuses
        r = httpx.post(f"{server.url}/api/chat", json={"messages": messages, "stream": False,
                                                       "options": {"num_predict": 8}}, timeout=60)
        assert r.status_code == 200, r.text
        kept = server.engine.recent[-1]
        assert len(kept) <= 256 * 3 // 4
        cut = next(k for k in range(0, len(history), 2)
                   if cg.chat_ids([system, *history[k:], messages[-1]]) == kept)
        assert cut > 0 and cg.tokenizer.decode(kept).startswith("<start_of_turn>user\nbe brief\n\nquestion")
        n = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": messages[-1:], "n": 2,
                                                                  "max_tokens": 4}, timeout=60).json()
        assert [c["index"] for c in n["choices"]] == [0, 1]
        assert n["choices"][0]["message"] == n["choices"][1]["message"]  # greedy: the same twice
        one = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": messages[-1:], "max_tokens": 4},
                         timeout=60).json()
        assert n["usage"]["completion_tokens"] == 2 * one["usage"]["completion_tokens"]
        assert n["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    finally:
        server.stop()


def test_a_chat_pauses_for_completions_and_resumes_exactly(cg):
    """Completions are answered while a long chat is generating; the chat's text is what it is alone."""
    chat_ids = cg.chat_ids([{"role": "user", "content": "tell me a long story"}])
    alone = cg.run([chat_ids], Options(max_tokens=120))[0].text
    fim = cg.fim_ids(PREFIX, SUFFIX)

    async def main() -> tuple[list[str], str]:
        loop = asyncio.get_running_loop()
        engine = Engine(cg, ctx=256, prefill_chunk=16, parallel=1)
        try:
            chat = Job(chat_ids, Options(max_tokens=120), loop, priority=CHAT)
            engine.submit(chat)
            finished = []
            texts = []
            while not engine.busy:
                await asyncio.sleep(0.001)
            for k in range(3):
                job = Job(fim.ids, Options(max_tokens=8, stop_ids=fim.stop_ids), loop, client=f"editor {k}")
                engine.submit(job)
                text = []
                while (event := await job.events.get())[0] != "done":
                    text.append(event[1])
                finished.append("completion")
                texts.append("".join(text))
            text = []
            while (event := await chat.events.get())[0] != "done":
                text.append(event[1])
            assert event[1]["completion_tokens"] == 120 or event[1]["finish_reason"] == "stop"
            return texts, "".join(text), engine.stats.pauses
        finally:
            engine.close()

    completions, chat_text, pauses = asyncio.run(main())
    assert pauses >= 1  # the completions did not wait for the chat's 120 tokens
    assert completions == [cg.complete(PREFIX, SUFFIX, max_tokens=8)] * 3
    assert chat_text == alone


def test_switching_back_to_a_file_resumes_from_its_snapshot(cg):
    """File A, file B, file A again: the second A prefills almost nothing and answers as a fresh one."""
    file_a = "import os\nimport sys\n\n" * 8 + "def main():\n    "
    file_b = "class Point:\n    def __init__(self, x, y):\n" * 6 + "        self."
    server = LiveServer(create_app(cg, name="tiny", ctx=256))
    try:
        def ask(prefix: str) -> dict:
            return httpx.post(f"{server.url}/infill", json={"input_prefix": prefix, "input_suffix": "\n",
                                                            "n_predict": 8}, timeout=60).json()

        first, _, again = ask(file_a), ask(file_b), ask(file_a + "x")
        assert first["tokens_cached"] <= 1 and again["tokens_cached"] >= 0.9 * first["tokens_evaluated"]
        assert server.engine.stats.snapshot_hits == 1 and len(server.engine.snapshots) >= 1
        assert again["content"] == cg.complete(file_a + "x", "\n", max_tokens=8)
    finally:
        server.stop()
    cold = LiveServer(create_app(cg, name="tiny", ctx=256, cache_ram=0))  # without snapshots: cold again
    try:
        for prefix in (file_a, file_b):
            httpx.post(f"{cold.url}/infill", json={"input_prefix": prefix, "input_suffix": "\n", "n_predict": 8})
        r = httpx.post(f"{cold.url}/infill", json={"input_prefix": file_a + "x", "input_suffix": "\n",
                                                   "n_predict": 8}).json()
        assert r["tokens_cached"] <= 2
    finally:
        cold.stop()


def test_snapshots_stay_within_their_byte_budget():
    from codegemma.server.prompt_cache import PromptCache

    def snap(n: int) -> list:
        return [(torch.zeros(1, 1, n, 4), torch.zeros(1, 1, n, 4))]  # 32 bytes a token

    cache = PromptCache(budget=32 * 100)
    cache.put([1, 2, 3], snap(3))
    cache.put([1, 2, 3, 4], snap(4))  # extends the first: replaces it
    assert list(cache.entries) == [(1, 2, 3, 4)] and cache.bytes == 128
    cache.put([9] * 60, snap(60))
    cache.put([8] * 60, snap(60))  # over the budget: the least recently used goes
    assert list(cache.entries) == [(8,) * 60] and cache.bytes == 32 * 60
    assert cache.best([8] * 10 + [7])[2] == 10 and cache.best([5]) is None
