"""Continuous batching: several sequences in one forward pass, each getting what it gets alone; chat beside
completions; KV chunks shifted into place with their keys re-rotated (--cache-reuse)."""

from __future__ import annotations

import asyncio
import sysconfig
from pathlib import Path

import httpx
import pytest
import torch

from codegemma import load
from codegemma.api import Options
from codegemma.model import Rows
from codegemma.server import create_app
from codegemma.server.engine import CHAT, Engine, Job
from test_server import PREFIX, SUFFIX, LiveServer


@pytest.fixture(scope="module")
def cg(tiny_checkpoint):
    return load(tiny_checkpoint)


@pytest.fixture(scope="module")
def quantized_model(default_model):
    """The default model as `make run` serves it: its blocks read by the quantized kernels, bfloat16."""
    return default_model


def alone_logits(model, prompt: list[int]) -> torch.Tensor:
    """Logits for the next token after `prompt`, decoded alone: all but the last token prefilled into a
    one-row cache, then the last one fed as a single decoding step (as the engine does)."""
    cache = model.make_cache(1, len(prompt))
    with torch.inference_mode():
        model(torch.tensor([prompt[:-1]]), last=0, cache=cache, row=0)
        return model.decode_rows([prompt[-1]], Rows((0,), (len(prompt) - 1,)), cache)


@pytest.mark.parametrize("which", ["tiny", "default quantized"])
def test_rows_of_different_lengths_decode_exactly_as_alone(which, cg, quantized_model):
    model = cg.model if which == "tiny" else quantized_model.model
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, min(vocab, 1000), (n,), generator=g).tolist() for n in (5, 40, 17, 90, 3, 61)]
    cache = model.make_cache(len(prompts), 128, empty=True)
    rows = (4, 0, 5, 2, 1, 3)  # any row, any order
    with torch.inference_mode():
        for row, p in zip(rows, prompts):
            model(torch.tensor([p[:-1]]), last=0, cache=cache, row=row)
        together = model.decode_rows([p[-1] for p in prompts], Rows(rows, tuple(len(p) - 1 for p in prompts)), cache)
    for i, p in enumerate(prompts):
        alone = alone_logits(model, p)
        if which == "default quantized":  # the kernels' rows never share an accumulator: bit for bit
            assert torch.equal(together[i:i + 1], alone), f"row {i} differs from its decoding alone"
        else:  # a dense float32 GEMM of several rows may round unlike a single row's product (BLAS's choice)
            torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-5)
            assert together[i].argmax() == alone[0].argmax()


def test_moved_keys_are_rerotated_to_their_new_place(cg):
    """Layer 0's keys depend on the token and its position only: after a move by -d slots they must equal
    the keys computed fresh at the new place (values move unchanged)."""
    model = cg.model
    chunk_a, chunk_b = list(range(10, 30)), list(range(40, 73))
    before = [2] + chunk_a + chunk_b
    cache = model.make_cache(2, 64)
    with torch.inference_mode():
        model(torch.tensor([before]), last=0, cache=cache, row=0)
        model.move_slots(cache, 0, 1 + len(chunk_a), 1, len(chunk_b))
        model(torch.tensor([[2] + chunk_b]), last=0, cache=cache, row=1)
    moved, fresh = cache[0].k[0, :, 1:1 + len(chunk_b)], cache[0].k[1, :, 1:1 + len(chunk_b)]
    assert not torch.allclose(moved, cache[0].k[0, :, 1 + len(chunk_a):1 + len(chunk_a) + len(chunk_b)])
    torch.testing.assert_close(moved, fresh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache[0].v[0, :, 1:1 + len(chunk_b)], cache[0].v[1, :, 1:1 + len(chunk_b)])


def collect(jobs: list[Job]):
    async def one(job: Job) -> tuple[str, dict]:
        text = []
        while (event := await job.events.get())[0] != "done":
            assert event[0] == "text", event
            text.append(event[1])
        return "".join(text), event[1]

    return asyncio.gather(*(one(j) for j in jobs))


def test_continuous_batching_gives_each_request_its_text_alone(quantized_model):
    """Requests arriving at different times, with different limits and sampling settings, decoded together,
    each get exactly the text they get from an engine serving one request at a time. (Without the prefix
    cache: keys reused from another prompt's prefill were computed in a GEMM of another shape, which may
    round differently in the last bit, as in any prefix cache; for the same reason the engine, which
    feeds a prompt's last token as its first decoding step, may differ at a near-tie from cg.run.)"""
    cg = quantized_model
    sources = ["def fibonacci(n):\n", "import os\n\nclass Config:\n    def __init__(self", "SELECT name FROM",
               "// quicksort in C\nvoid sort(int *a, int n) {\n", "<html>\n  <body>\n", "fn main() {\n    let"]
    specs = [(cg.tokenizer.encode(src, bos=True), Options(max_tokens=12 + 4 * i, temperature=0.8 if i % 2 else 0.0,
                                                          top_k=40, seed=i))
             for i, src in enumerate(sources)]

    def serve(parallel: int, stagger: bool) -> tuple[list[str], Engine]:
        async def main() -> list[str]:
            loop = asyncio.get_running_loop()
            jobs = []
            for i, (ids, opts) in enumerate(specs):
                jobs.append(Job(ids, opts, loop))
                engine.submit(jobs[-1])
                if stagger and i == 2:
                    await asyncio.sleep(0.3)  # the later ones join rows that are already decoding
            return [text for text, _ in await collect(jobs)]

        engine = Engine(cg, ctx=256, parallel=parallel, prefix_cache=False)  # every prompt prefilled the same way
        try:
            return asyncio.run(main()), engine
        finally:
            engine.close()

    one_at_a_time, _ = serve(1, False)
    together, engine = serve(4, True)
    assert together == one_at_a_time
    assert engine.stats.batched_tokens >= 2.5 * engine.stats.decode_steps  # rows really shared passes


def test_a_reader_of_the_whole_text_gets_it_in_one_event(cg):
    """A job whose reader wants the whole text (stream False, as non-streaming requests are read) gets one text
    event, with the end: the same text a streamed job gets over many events, and no wake-up per step."""
    ids = cg.fim_ids(PREFIX, SUFFIX).ids

    async def main() -> tuple[list, list]:
        loop = asyncio.get_running_loop()
        streamed, whole = Job(ids, Options(max_tokens=24), loop), Job(ids, Options(max_tokens=24), loop, stream=False)
        engine.submit(streamed, whole)
        events = []
        for job in (streamed, whole):
            events.append([])
            while (event := await job.events.get())[0] != "done":
                events[-1].append(event)
        return events

    engine = Engine(cg, ctx=256, parallel=2)
    try:
        streamed, whole = asyncio.run(main())
    finally:
        engine.close()
    assert len(streamed) > 1 and len(whole) == 1
    assert whole[0][1] == "".join(text for _, text in streamed)


def test_speculative_rows_give_the_text_of_plain_decoding(quantized_model):
    """Drafts verified as extra rows of the engine's passes, several sequences at once: the same text as the
    engine without speculation, greedy and seeded sampling alike; and drafts were kept."""
    cg = quantized_model
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    texts = [source[:900], source[2400:3300], "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n",
             source[6000:6500]]
    specs = [(cg.tokenizer.encode(t, bos=True), Options(max_tokens=32, temperature=0.7 * (i % 2), seed=i))
             for i, t in enumerate(texts)]

    def serve(speculate: bool) -> tuple[list[str], Engine]:
        async def main() -> list[str]:
            loop = asyncio.get_running_loop()
            jobs = [Job(ids, opts, loop) for ids, opts in specs]
            engine.submit(*jobs)
            return [text for text, _ in await collect(jobs)]

        cg.speculate = speculate
        engine = Engine(cg, ctx=512, parallel=4, prefix_cache=False)
        try:
            return asyncio.run(main()), engine
        finally:
            engine.close()
            cg.speculate = None

    plain, _ = serve(False)
    fast, engine = serve(True)
    assert fast == plain
    assert engine.stats.accepted_tokens > 0 and engine.stats.drafted_tokens >= engine.stats.accepted_tokens


def test_a_chat_runs_beside_completions_without_stalling_them(cg):
    """With two rows, completions are answered while a long chat keeps decoding (never swapped out), and
    both get the text they get alone."""
    chat_ids = cg.chat_ids([{"role": "user", "content": "tell me a long story"}])
    alone = cg.run([chat_ids], Options(max_tokens=120))[0].text
    fim = cg.fim_ids(PREFIX, SUFFIX)

    async def main() -> tuple[list[str], str, int]:
        loop = asyncio.get_running_loop()
        chat = Job(chat_ids, Options(max_tokens=120), loop, priority=CHAT)
        engine.submit(chat)
        while not engine.busy:
            await asyncio.sleep(0.001)
        texts = []
        for k in range(3):
            job = Job(fim.ids, Options(max_tokens=8, stop_ids=fim.stop_ids), loop, client=f"editor {k}")
            engine.submit(job)
            texts.append((await collect([job]))[0][0])
            assert engine.busy  # the chat is still decoding: completions did not wait for it
        return texts, (await collect([chat]))[0][0], engine.stats.pauses

    engine = Engine(cg, ctx=256, parallel=2, prefill_chunk=16)
    try:
        completions, chat_text, pauses = asyncio.run(main())
    finally:
        engine.close()
    assert pauses == 0
    assert completions == [cg.complete(PREFIX, SUFFIX, max_tokens=8)] * 3
    assert chat_text == alone


def test_cache_reuse_shifts_chunks_that_moved(cg):
    """llama.vim's ring buffer: the oldest chunk leaves the front, the rest move up. With --cache-reuse the
    moved chunks are shifted into place instead of prefilled again; without it they are prefilled."""
    chunks = [f"# file {i}\n" + "".join(f"value_{i}_{j} = {j}\n" for j in range(6)) for i in range(4)]

    def ask(server: LiveServer, ring: list[str]) -> dict:
        body = {"input_prefix": "".join(ring) + "def main():\n", "input_suffix": "\n", "n_predict": 4}
        r = httpx.post(f"{server.url}/infill", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    results = {}
    for reuse in (0, 8):
        server = LiveServer(create_app(cg, name="tiny", ctx=256, parallel=1, cache_ram=0, cache_reuse=reuse))
        try:
            ask(server, chunks[:3])
            moved = ask(server, chunks[1:4])
            results[reuse] = (moved, server.engine.stats.shifted_tokens)
        finally:
            server.stop()
    (cold, cold_shifted), (warm, warm_shifted) = results[0], results[8]
    assert cold_shifted == 0 and cold["tokens_cached"] <= 8  # the sentinel and "# file " agree
    chunk_tokens = len(cg.tokenizer.encode("".join(chunks[1:3])))
    assert warm_shifted >= 0.9 * chunk_tokens and warm["tokens_cached"] >= 0.9 * chunk_tokens
    assert warm["timings"]["prompt_n"] <= cold["timings"]["prompt_n"] - 0.9 * chunk_tokens
