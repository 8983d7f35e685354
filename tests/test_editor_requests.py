"""Requests replayed exactly as editor extensions send them (tests/fixtures/editor_requests.json), on a tiny
CodeGemma (FIM tokens) and on the default model (none), each served as `make run` serves (window 4096)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from codegemma import load
from codegemma.server import create_app
from test_server import PREFIX, SUFFIX, LiveServer

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "editor_requests.json").read_text())["requests"]
TEMPLATED = f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"


def fill(value):
    """The fixture's placeholders, replaced inside strings, lists and objects."""
    if isinstance(value, str):
        return value.replace("{PREFIX}", PREFIX).replace("{SUFFIX}", SUFFIX).replace("{TEMPLATED}", TEMPLATED)
    if isinstance(value, list):
        return [fill(v) for v in value]
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    return value


STREAM_EVENTS = 12  # a streaming extension stops reading early (Continue after ~375 ms), then hangs up


def send(url: str, fixture: dict) -> tuple[int, list[dict]]:
    """The status and the objects the extension reads: the body (or its candidates), or the first
    STREAM_EVENTS streamed objects (or all of them, if the stream ends before)."""
    body = fill(fixture["body"])
    if not fixture["stream"]:
        r = httpx.request(fixture["method"], url, json=body, timeout=120)
        if fixture.get("empty_body"):  # Tabby's /v1/events answers 200 with nothing
            return r.status_code, [] if not r.content else [{"unexpected body": r.text}]
        data = r.json()
        return r.status_code, data if isinstance(data, list) else [data]
    objs = []
    with httpx.stream(fixture["method"], url, json=body, timeout=120) as r:
        for line in r.iter_lines():
            text = line[6:] if fixture["stream"] == "sse" and line.startswith("data: ") else line
            if text.strip() and text != "[DONE]" and (fixture["stream"] == "ndjson" or line.startswith("data: ")):
                objs.append(json.loads(text))
            if len(objs) >= STREAM_EVENTS:
                break
    return r.status_code, objs


def reach(obj: dict, path: str, flat: bool):
    if flat:
        return obj[path]
    for key in path.split("/"):
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    return obj


@pytest.fixture(scope="module", params=["tiny CodeGemma", "default model"])
def served(request, tiny_checkpoint, default_model):
    cg = load(tiny_checkpoint) if request.param == "tiny CodeGemma" else default_model
    server = LiveServer(create_app(cg, ctx=4096))  # `make run`: the file's name, window 4096, queue 512
    yield cg, server
    server.stop()


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f"{f['extension']} {f['path']}" for f in FIXTURES])
def test_extension_request(served, fixture):
    cg, server = served
    before = len(server.engine.recent)
    status, objs = send(f"{server.url}{fixture['path']}", fixture)
    assert status == 200, objs
    expected = 0 if fixture.get("empty_body") else fixture.get("candidates", 1)
    assert len(objs) == expected if not fixture["stream"] else 1 <= len(objs) <= STREAM_EVENTS
    for obj in objs:
        for path in fixture["reads"]:
            reach(obj, path, fixture.get("flat", False))  # raises if the extension would fail to read it
        assert "error" not in obj
    if fixture.get("templated") and len(server.engine.recent) > before:
        ids = server.engine.recent[-1]
        # sentinels are control tokens where the vocabulary has them, and nothing is spelled out twice
        assert ids == cg.tokenizer.encode(TEMPLATED, parse_special=True)
        if cg.fim_native:
            assert cg.tokenizer.token_id("<|fim_prefix|>") in ids
    deadline = time.time() + 30  # a client that stopped reading has hung up: its generation stops too
    while (server.engine.busy or server.engine.waiting) and time.time() < deadline:
        time.sleep(0.01)
    assert not server.engine.busy


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_requests() -> list[str]:
    return [line.strip() for line in README.read_text().splitlines() if line.startswith("curl -s http://127.0.0.1:8080")]


def test_every_request_in_the_readme_works_against_make_run(default_model):
    """The README's curl lines, run as written (only the port differs) against `make run`'s settings."""
    import subprocess

    lines = readme_requests()
    assert len(lines) >= 5
    server = LiveServer(create_app(default_model, ctx=4096))
    try:
        for line in lines:
            command = line.replace("http://127.0.0.1:8080", server.url)
            out = subprocess.run(["bash", "-c", command + " -w '\\n%{http_code}'"], capture_output=True, text=True,
                                 timeout=300)
            body, status = out.stdout.rsplit("\n", 1)
            assert out.returncode == 0 and status == "200", (line, out.stdout[-500:])
            if "/metrics" not in line:
                assert "error" not in json.loads(body), line
    finally:
        server.stop()
