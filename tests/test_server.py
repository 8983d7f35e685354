"""The real server on an ephemeral loopback port, driven by the official openai and ollama clients and raw HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from codegemma import load
from codegemma.api import Options
from codegemma.prompts import ContextFile
from codegemma.server import create_app, listen
from codegemma.server.engine import IndentStop

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
SENTINELS = ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>", "<end_of_turn>")


class LiveServer:
    def __init__(self, app) -> None:
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)

    @property
    def engine(self):
        return self.app.app.state.server.engine

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def cg(tiny_checkpoint):
    return load(tiny_checkpoint)


@pytest.fixture(scope="module")
def live(cg):
    server = LiveServer(create_app(cg, name="tiny", ctx=256, queue=8))
    yield server
    server.stop()


def expected_fim(cg, max_tokens: int) -> str:
    return cg.complete(PREFIX, SUFFIX, max_tokens=max_tokens)


def api_completion(cg, max_tokens: int):
    """The API's completion of PREFIX/SUFFIX, with its finish reason and token count."""
    fim = cg.fim_ids(PREFIX, SUFFIX)
    return cg.run([fim.ids], Options(max_tokens=max_tokens, stop_ids=fim.stop_ids))[0]


def test_openai_fim_completion(live, cg):
    from openai import OpenAI
    client = OpenAI(base_url=f"{live.url}/v1", api_key="unused")
    out = client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=24, temperature=0)
    text = out.choices[0].text
    assert text == expected_fim(cg, 24)
    assert not any(s in text for s in SENTINELS)
    api = api_completion(cg, 24)
    assert (out.choices[0].finish_reason, out.usage.completion_tokens) == (api.finish_reason, api.completion_tokens)
    assert [m.id for m in client.models.list()] == ["tiny", "codegemma"]


def test_openai_streaming_and_chat(live, cg):
    from openai import OpenAI
    client = OpenAI(base_url=f"{live.url}/v1", api_key="unused")
    chunks = list(client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=24, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected_fim(cg, 24)
    assert chunks[-1].choices[0].finish_reason == api_completion(cg, 24).finish_reason
    messages = [{"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12)
    assert reply.choices[0].message.content == cg.chat(messages, max_tokens=12)
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == reply.choices[0].message.content


def test_openai_prompt_parses_special_tokens_only_there(live, cg):
    templated = "<|fim_prefix|>" + PREFIX + "<|fim_suffix|>" + SUFFIX + "<|fim_middle|>"
    r = httpx.post(f"{live.url}/v1/completions", json={"prompt": templated, "max_tokens": 24}).json()
    ids = cg.tokenizer.encode(templated, parse_special=True)
    assert 67 in ids and r["usage"]["prompt_tokens"] == len(ids)
    fim = httpx.post(f"{live.url}/v1/completions", json={"prompt": templated, "suffix": "", "max_tokens": 4}).json()
    assert fim["usage"]["prompt_tokens"] > len(ids)  # as a prefix, the same text is plain code


def test_ollama_generate_chat_and_metadata(live, cg):
    import ollama
    client = ollama.Client(host=live.url)
    out = client.generate(model="tiny", prompt=PREFIX, suffix=SUFFIX, options={"num_predict": 24, "temperature": 0})
    assert out.response == expected_fim(cg, 24)
    parts = list(client.generate(model="tiny", prompt=PREFIX, suffix=SUFFIX, options={"num_predict": 24},
                                 stream=True))
    assert "".join(p.response for p in parts) == out.response and parts[-1].done
    chat = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 8})
    assert chat.message.content == cg.chat([{"role": "user", "content": "hi"}], max_tokens=8)
    show = client.show("tiny")
    assert ".Suffix" in show.template and "insert" in show.capabilities
    assert [m.model for m in client.list().models] == ["tiny", "codegemma"]
    assert httpx.get(f"{live.url}/api/version").json()["version"]


def test_llama_cpp_infill_and_completion(live, cg):
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 24, "temperature": 0}
    r = httpx.post(f"{live.url}/infill", json=body).json()
    assert r["content"] == expected_fim(cg, 24) and r["stop"] is True
    lines = [json.loads(line[6:]) for line in httpx.post(f"{live.url}/infill", json={**body, "stream": True})
             .text.splitlines() if line.startswith("data: ")]
    assert "".join(x["content"] for x in lines) == r["content"] and lines[-1]["stop"]
    extra = {**body, "input_extra": [{"filename": "util.py", "text": "def helper():\n    return 1\n"}]}
    assert httpx.post(f"{live.url}/infill", json=extra).json()["tokens_evaluated"] > r["tokens_evaluated"]
    fill = httpx.post(f"{live.url}/infill", json={**body, "n_predict": 0}).json()
    assert fill["content"] == "" and fill["tokens_predicted"] == 0
    c = httpx.post(f"{live.url}/completion", json={"prompt": "def f():", "n_predict": 8}).json()
    assert c["content"] == cg.generate("def f():", max_tokens=8)
    assert httpx.get(f"{live.url}/health").json() == {"status": "ok"}


def test_prefix_cache_reuse_gives_the_same_answer(live, cg):
    prefix = "import os\nimport sys\n\n" * 8 + "def main():\n    "
    body = {"input_prefix": prefix, "input_suffix": "\n", "n_predict": 16}
    first = httpx.post(f"{live.url}/infill", json=body).json()
    edited = {**body, "input_prefix": prefix + "x"}
    second = httpx.post(f"{live.url}/infill", json=edited).json()
    assert second["tokens_cached"] > 0.8 * second["tokens_evaluated"]
    fresh = cg.complete(prefix + "x", "\n", max_tokens=16)
    assert second["content"] == fresh and first["tokens_cached"] < second["tokens_cached"]


def test_context_longer_than_window_is_cut_near_the_cursor(live):
    long_prefix = "x = 1\n" * 400  # far more than the 256-token window
    r = httpx.post(f"{live.url}/infill", json={"input_prefix": long_prefix, "input_suffix": "y = 2\n" * 100,
                                               "n_predict": 8}).json()
    assert r["truncated"] is True and r["tokens_evaluated"] <= 256 - 8


def test_disconnect_stops_generation_and_server_stays_healthy(live):
    engine = live.engine
    before = engine.stats.cancelled
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{live.url}/completion",
                           json={"prompt": "def f():", "n_predict": 200, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # got the first token; hang up
    deadline = time.time() + 5
    while (engine.busy or engine.stats.cancelled == before) and time.time() < deadline:
        time.sleep(0.02)
    assert engine.stats.cancelled == before + 1 and not engine.busy
    assert httpx.get(f"{live.url}/health").status_code == 200


def test_concurrent_clients(live, cg):
    prompts = ["def a():", "class B:", "import re", "x = [", "for i in", "while True:"]

    def ask(p):
        return httpx.post(f"{live.url}/completion", json={"prompt": p, "n_predict": 10}, timeout=60).json()["content"]

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(ask, prompts))
    assert got == [cg.generate(p, max_tokens=10) for p in prompts]


def test_health_does_not_wait_and_full_queue_answers_503(cg):
    server = LiveServer(create_app(cg, name="tiny", ctx=256, queue=1))
    try:
        slow = threading.Thread(target=lambda: httpx.post(f"{server.url}/completion",
                                                          json={"prompt": "a", "n_predict": 240}, timeout=60))
        slow.start()
        while not server.engine.busy:
            time.sleep(0.01)
        t = time.perf_counter()
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert time.perf_counter() - t < 0.5
        busy = httpx.post(f"{server.url}/completion", json={"prompt": "b", "n_predict": 4})
        assert busy.status_code == 503 and "busy" in busy.json()["error"]["message"]
        slow.join()
    finally:
        server.stop()


def test_a_tiny_temperature_is_served_as_greedy(live, cg):
    """The schema fuzz test's find, replayed: this body made every decoding step fail (NaN probabilities)."""
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 8, "temperature": 5.220944808520968e-212,
            "top_k": 413}
    r = httpx.post(f"{live.url}/infill", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == expected_fim(cg, 8)


def test_a_failure_in_one_row_ends_that_request_alone(live, cg, monkeypatch):
    """A row whose sampling raises ends with a 500 in its dialect's shape, logged; a greedy request decoded
    beside it finishes as it would alone, and the engine serves on."""
    import codegemma.server.engine as engine_module

    def broken(*args, **kwargs):
        raise RuntimeError("sampling broke")

    monkeypatch.setattr(engine_module, "sample", broken)
    with ThreadPoolExecutor(2) as pool:
        sampled = pool.submit(httpx.post, f"{live.url}/completion", json={"prompt": "def f():", "n_predict": 40,
                                                                          "temperature": 0.8}, timeout=60)
        greedy = pool.submit(httpx.post, f"{live.url}/completion", json={"prompt": "class B:", "n_predict": 10},
                             timeout=60)
        assert sampled.result().status_code == 500 and "sampling broke" in sampled.result().json()["error"]["message"]
        assert greedy.result().json()["content"] == cg.generate("class B:", max_tokens=10)
    monkeypatch.undo()
    r = httpx.post(f"{live.url}/completion", json={"prompt": "def f():", "n_predict": 4, "temperature": 0.8})
    assert r.status_code == 200 and r.json()["tokens_predicted"] >= 1
    assert not live.engine.busy


def test_accepted_connections_send_without_nagle():
    """The listener `serve` gives uvicorn makes connections with TCP_NODELAY (as uvicorn's own server starts
    them: asyncio's create_server on that socket). A listener from socket.create_server made connections with
    Nagle's algorithm on: each request on a kept-alive connection after the first took ~40 ms longer."""
    import asyncio

    async def accepted() -> int:
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        class Report(asyncio.Protocol):
            def connection_made(self, transport):
                seen.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        sock = listen("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Report, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname())
            value = await asyncio.wait_for(seen, 5)
            writer.close()
        return value

    assert asyncio.run(accepted()) != 0


def test_api_key(cg):
    from openai import AuthenticationError, OpenAI
    server = LiveServer(create_app(cg, name="tiny", ctx=256, api_key="s3cret"))
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        assert httpx.post(f"{server.url}/infill", json={}).status_code == 401
        assert httpx.get(f"{server.url}/api/tags", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = OpenAI(base_url=f"{server.url}/v1", api_key="s3cret").completions.create(model="tiny", prompt="x",
                                                                                       max_tokens=2)
        assert ok.choices[0].text is not None
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{server.url}/v1", api_key="nope").models.list()
    finally:
        server.stop()


BAD = [
    ("POST", "/v1/completions", b"{not json", 400),
    ("POST", "/v1/completions", b'{"prompt": "\xff\xfe"}', 400),
    ("POST", "/v1/completions", b'{"prompt": 5}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": -1}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "temperature": "hot"}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "top_p": 7}', 400),
    ("POST", "/v1/completions", b'[1, 2, 3]', 400),
    ("POST", "/v1/completions", b'{"language": "python", "segments": "def f():"}', 400),  # neither shape
    ("POST", "/v1/completions", b'{"language": "python", "segments": {"prefix": 5}}', 400),  # Tabby's, wrong type
    ("POST", "/v1/completions", b'{"segments": {"prefix": "a"}, "mode": "next_edit_suggestion"}', 400),
    ("POST", "/v1/events", b'{"type": "like", "completion_id": "cmpl-1", "choice_index": 0}', 400),
    ("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": 2000000}', 400),
    ("POST", "/v1/chat/completions", b'{"messages": []}', 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "robot", "content": "x"}]}', 400),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "a"}, '
                                     b'{"role": "user", "content": "b"}]}', 400),
    ("POST", "/api/generate", b'{"prompt": "x", "options": {"num_predict": "many"}}', 400),
    ("POST", "/api/chat", b'{"messages": "hi"}', 400),
    ("POST", "/infill", b'{"input_prefix": 3}', 400),
    ("POST", "/infill", b'{"input_extra": [{"filename": 1}]}', 400),
    ("POST", "/infill", b'{"n_predict": -5}', 400),
    ("POST", "/completion", b'{"prompt": [1, 99999999]}', 400),
    ("GET", "/no/such/route", b"", 404),
    ("DELETE", "/v1/models", b"", 405),
]


@pytest.mark.parametrize("method, path, body, status", BAD)
def test_bad_input_gets_a_4xx_with_a_json_error(live, method, path, body, status):
    r = httpx.request(method, f"{live.url}{path}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert httpx.get(f"{live.url}/health").status_code == 200


def test_over_long_body_is_refused(cg):
    server = LiveServer(create_app(cg, name="tiny", ctx=256, max_body=1000))
    try:
        r = httpx.post(f"{server.url}/infill", content=b'{"input_prefix": "' + b"x" * 5000 + b'"}')
        assert r.status_code == 413 and "error" in r.json()
    finally:
        server.stop()


def test_indent_stop():
    s = IndentStop(4)
    assert "".join(s.push(c) for c in "x = 1\n    y = 2\n\n    z\nreturn w\n") == "x = 1\n    y = 2\n\n    z\n"
    assert s.stopped
    assert IndentStop(0).push("a\nb") == "a\nb"


def test_schema_fuzz_finds_no_server_errors(cg):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    app = create_app(cg, name="tiny", ctx=128, queue=64)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures, statuses = [], []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            statuses.append((case.path, response.status_code))
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code))

        check()
    app.app.state.server.engine.close()
    assert not failures, failures[:3]
    paths = {p for p, _ in statuses}
    assert {"/v1/completions", "/v1/chat/completions", "/api/generate", "/infill", "/completion"} <= paths
    assert any(200 <= c < 300 for _, c in statuses) and any(400 <= c < 500 for _, c in statuses)


CONTEXT = (ContextFile("util.py", "def helper():\n    return 1\n"), ContextFile("b.py", "B = 2\n"))


def dialect_requests(context: bool) -> dict[str, tuple[str, dict]]:
    """The same completion as each dialect asks for it (llama.cpp's /infill is the one that carries files)."""
    extra = [{"filename": f.path, "text": f.text} for f in CONTEXT] if context else []
    out = {"llama.cpp /infill": ("/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, "input_extra": extra,
                                             "n_predict": 4})}
    if not context:
        out["OpenAI /v1/completions"] = ("/v1/completions", {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 4})
        out["Ollama /api/generate"] = ("/api/generate", {"prompt": PREFIX, "suffix": SUFFIX, "stream": False,
                                                         "options": {"num_predict": 4}})
    return out


def assert_dialects_send_the_api_ids(server: LiveServer, cg) -> None:
    for context in (False, True):
        expected = cg.fim_ids(PREFIX, SUFFIX, context=CONTEXT if context else ()).ids
        for dialect, (path, body) in dialect_requests(context).items():
            assert httpx.post(f"{server.url}{path}", json=body, timeout=60).status_code == 200
            assert server.engine.recent[-1] == expected, f"{dialect}, context files: {context}"


def test_every_dialect_sends_the_ids_the_api_builds(live, cg):
    assert cg.fim_native
    assert_dialects_send_the_api_ids(live, cg)


def test_every_dialect_sends_the_api_ids_without_fim_tokens(default_model):
    """The default model has no FIM tokens: context files and prefix are continued left to right."""
    assert not default_model.fim_native
    server = LiveServer(create_app(default_model, name="default", ctx=1024, queue=2))
    try:
        assert_dialects_send_the_api_ids(server, default_model)
    finally:
        server.stop()


def test_limits_are_capped_at_the_room_left_never_refused(live, cg):
    """Continue's Ollama autocomplete sends num_predict 4096 whatever the window; llama.cpp and Ollama cap it."""
    body = {"model": "codegemma", "prompt": PREFIX, "suffix": SUFFIX, "stream": False, "keep_alive": 1800,
            "options": {"temperature": 0.01, "top_p": 1, "num_predict": 4096, "num_ctx": 8192, "stop": ["\n\n\n"]}}
    r = httpx.post(f"{live.url}/api/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    prompt_len = r.json()["prompt_eval_count"]
    assert prompt_len == len(live.engine.recent[-1]) and prompt_len <= 256 - 256 // 4  # a quarter kept for output
    assert r.json()["eval_count"] <= 256 - prompt_len
    big = httpx.post(f"{live.url}/v1/completions", json={"prompt": "def f():", "max_tokens": 100000}, timeout=60)
    assert big.status_code == 200 and big.json()["usage"]["total_tokens"] <= 256
    c = httpx.post(f"{live.url}/completion", json={"prompt": "def f():", "n_predict": 1000000}, timeout=60).json()
    assert c["content"] == cg.generate("def f():", max_tokens=256 - c["tokens_evaluated"])


def test_any_model_name_is_served_and_the_alias_is_listed(live):
    from openai import OpenAI
    client = OpenAI(base_url=f"{live.url}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["tiny", "codegemma"]
    out = client.completions.create(model="codegemma", prompt="x", max_tokens=2)
    assert out.choices[0].text is not None
    tags = httpx.get(f"{live.url}/api/tags").json()
    assert [m["name"] for m in tags["models"]] == ["tiny", "codegemma"]


def test_ollama_show_gives_what_continue_and_ollama_rs_read(live):
    show = httpx.post(f"{live.url}/api/show", json={"name": "codegemma"}).json()
    params = dict(line.split(None, 1) for line in show["parameters"].splitlines() if not line.startswith("stop"))
    stops = [line.split(None, 1)[1] for line in show["parameters"].splitlines() if line.startswith("stop")]
    assert params["num_ctx"] == "256" and '"<|fim_prefix|>"' in stops and '"<end_of_turn>"' in stops
    assert isinstance(show["license"], str) and show["license"]
    assert show["template"].startswith("{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>")


def test_ollama_non_raw_prompt_parses_special_tokens(live, cg):
    """As Ollama does: Tabby's and llm-ls' FIM-templated prompts arrive without `raw`."""
    templated = "<|fim_prefix|>" + PREFIX + "<|fim_suffix|>" + SUFFIX + "<|fim_middle|>"
    r = httpx.post(f"{live.url}/api/generate", json={"prompt": templated, "stream": False,
                                                     "options": {"num_predict": 4}}, timeout=60).json()
    assert live.engine.recent[-1] == cg.tokenizer.encode(templated, parse_special=True)
    assert r["prompt_eval_count"] == len(live.engine.recent[-1]) and 67 in live.engine.recent[-1]


def test_llama_cpp_answers_carry_generation_settings_and_full_timings(live):
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 16, "t_max_predict_ms": 2500,
            "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True, "top_k": 40, "top_p": 0.99}
    r = httpx.post(f"{live.url}/infill", json=body, timeout=60).json()
    assert r["generation_settings"]["n_ctx"] == 256 and r["generation_settings"]["n_predict"] == 16
    t = r["timings"]
    assert t["predicted_n"] == r["tokens_predicted"] and t["prompt_n"] == r["tokens_evaluated"] - r["tokens_cached"]
    assert t["prompt_ms"] > 0 and t["predicted_ms"] >= 0
    assert t["predicted_per_token_ms"] == pytest.approx(t["predicted_ms"] / max(t["predicted_n"], 1))
    fields = ["content", "timings/prompt_n", "timings/predicted_per_second", "truncated", "tokens_cached", "no/such"]
    vim = httpx.post(f"{live.url}/infill", json={**body, "response_fields": fields}, timeout=60).json()
    assert set(vim) == set(fields) - {"no/such"} and vim["content"] == r["content"]
    streamed = [json.loads(line[6:]) for line in httpx.post(f"{live.url}/infill", json={**body, "stream": True},
                                                            timeout=60).text.splitlines() if line.startswith("data: ")]
    assert streamed[-1]["generation_settings"]["n_ctx"] == 256 and "prompt_per_second" in streamed[-1]["timings"]


def test_openai_stream_usage_chunk(live, cg):
    from openai import OpenAI
    client = OpenAI(base_url=f"{live.url}/v1", api_key="unused")
    chunks = list(client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True}))
    api = api_completion(cg, 24)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == api.completion_tokens
    assert "".join(c.choices[0].text for c in chunks[:-1]) == api.text
    plain = list(client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=24, stream=True))
    assert all(c.choices for c in plain)
