"""The Tabby dialect: health, completions told from OpenAI's by their body, snippets as CodeGemma multi-file
context, the event log and `codegemma stats`, and Tabby's own agent (npm tabby-agent) talking to us."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from codegemma import load
from codegemma.api import Options
from codegemma.prompts import ContextFile, FimRequest, build_fim
from codegemma.server import create_app
from codegemma.server.service import FIM_RESERVE
from codegemma.server.tabby import stop_words
from test_server import PREFIX, SUFFIX, LiveServer

AGENT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codegemma" / "npm" / "node_modules" \
    / "tabby-agent" / "dist" / "cli.js"


@pytest.fixture(scope="module")
def cg(tiny_checkpoint):
    return load(tiny_checkpoint)


@pytest.fixture()
def live(cg, tmp_path):
    server = LiveServer(create_app(cg, name="tiny", ctx=512, events_log=tmp_path / "events.jsonl"))
    yield server
    server.stop()


def segments(**extra) -> dict:
    return {"prefix": PREFIX, "suffix": SUFFIX, "filepath": "pkg/main.py", **extra}


def test_health_as_tabby_agent_reads_it(live):
    health = httpx.get(f"{live.url}/v1/health").json()
    assert health["model"] == "tiny" and health["device"] == "cpu" and health["version"]["git_describe"]
    assert health["cpu_count"] >= 1 and health["cuda_devices"] == []
    assert httpx.get(f"{live.url}/v1beta/server_setting").json() == {"disable_client_side_telemetry": True}


def test_tabby_snippets_become_codegemma_multi_file_context(live, cg):
    """Declarations nearest the code, then changed files, then recently opened ones (each group's most
    relevant last); the snippet of the file being edited and duplicates are left out."""
    decl = {"filepath": "pkg/util.py", "body": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"}
    changed = [{"filepath": "pkg/models.py", "body": "class Point:\n    x: int\n", "score": 0.9},
               {"filepath": "pkg/shapes.py", "body": "class Circle:\n    r: float\n", "score": 0.4}]
    recent = [{"filepath": "pkg/io.py", "body": "def load(path):\n    ...\n", "score": 0.5},
              {"filepath": "pkg/main.py", "body": PREFIX[:20], "score": 0.9}, decl]
    body = {"language": "python",
            "segments": segments(declarations=[decl], relevant_snippets_from_changed_files=changed,
                                 relevant_snippets_from_recently_opened_files=recent),
            "debug_options": {"return_snippets": True}}
    r = httpx.post(f"{live.url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"].startswith("cmpl-") and answer["choices"][0]["index"] == 0
    order = ["pkg/io.py", "pkg/shapes.py", "pkg/models.py", "pkg/util.py"]
    assert [s["filepath"] for s in answer["debug_data"]["snippets"]] == order
    texts = {s["filepath"]: s["body"] for s in [decl, *changed, *recent]}
    context = tuple(ContextFile(path, texts[path]) for path in order)
    ctx = live.app.app.state.server.ctx  # the tiny model's window, 256
    expected = build_fim(cg.tokenizer, FimRequest(PREFIX, SUFFIX, "pkg/main.py", context),
                         budget=ctx - int(ctx * FIM_RESERVE))
    assert live.engine.recent[-1] == expected.ids
    alone = cg.run([expected.ids], Options(max_tokens=64, stop=expected.stop + stop_words("python"),
                                           stop_ids=expected.stop_ids))[0].text
    assert answer["choices"][0]["text"] == alone
    plain = httpx.post(f"{live.url}/v1/completions", json={"prompt": "def f():", "max_tokens": 2}).json()
    assert plain["object"] == "text_completion"  # OpenAI's body on the same path is still OpenAI's


def test_events_are_logged_and_summarized_by_codegemma_stats(live, tmp_path):
    ids = []
    for k in range(3):
        body = {"language": "python", "segments": segments(prefix=PREFIX + "#" * k)}
        ids.append(httpx.post(f"{live.url}/v1/completions", json=body, timeout=60).json()["id"])
    events = [("view", ids[0]), ("view", ids[1]), ("view", ids[2]), ("select", ids[0]), ("dismiss", ids[1])]
    for kind, cid in events:
        r = httpx.post(f"{live.url}/v1/events", params={"select_kind": "line"} if kind == "select" else None,
                       json={"type": kind, "completion_id": cid, "choice_index": 0, "view_id": "v", "elapsed": 300})
        assert r.status_code == 200 and r.content == b""
    log = tmp_path / "events.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["type"] for r in records] == ["completion"] * 3 + [kind for kind, _ in events]
    assert records[6]["select_kind"] == "line" and all(r["latency_ms"] > 0 for r in records[:3])
    out = subprocess.run([sys.executable, "-m", "codegemma.cli", "stats", str(log), "--json"], capture_output=True,
                         text=True, check=True).stdout
    stats = json.loads(out)
    assert stats["completions"] == 3 and stats["viewed"] == 3 and stats["selected"] == 1
    assert stats["acceptance_rate"] == pytest.approx(1 / 3)
    accepted = len(records[0]["choices"][0]["text"])
    assert stats["accepted_chars"] == accepted
    shown_tokens = sum(r["completion_tokens"] for r in records[:3])
    assert stats["tokens_per_accepted_char"] == (pytest.approx(shown_tokens / accepted) if accepted else None)
    assert sorted([stats["latency_ms_p50"], stats["latency_ms_p90"]]) == [stats["latency_ms_p50"],
                                                                           stats["latency_ms_p90"]]
    table = subprocess.run([sys.executable, "-m", "codegemma.cli", "stats", str(log)], capture_output=True, text=True)
    assert table.returncode == 0 and "acceptance rate" in table.stdout
    broken = tmp_path / "broken.jsonl"
    broken.write_text(log.read_text() + "not json\n")
    bad = subprocess.run([sys.executable, "-m", "codegemma.cli", "stats", str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0 and f"{broken}:9" in bad.stderr


@pytest.mark.skipif(not AGENT.is_file() or not shutil.which("node"),
                    reason=f"tabby-agent is not installed ({AGENT}); `make test` installs it with npm")
def test_tabby_agent_completes_through_our_server(live, tmp_path):
    """Tabby's own agent (npm tabby-agent, run as a language server over stdio) configured with our server:
    it checks /v1/health, sends its completion request, and hands our text to the editor."""
    from lsprotocol import types as T
    from pygls.lsp.client import LanguageClient

    home = tmp_path / "home"
    (home / ".tabby-client" / "agent").mkdir(parents=True)
    (home / ".tabby-client" / "agent" / "config.toml").write_text(
        f'[server]\nendpoint = "{live.url}"\n\n[anonymousUsageTracking]\ndisable = true\n')
    source = PREFIX + SUFFIX
    line = PREFIX.count("\n")
    character = len(PREFIX) - (PREFIX.rfind("\n") + 1)

    async def main() -> list:
        client = LanguageClient("codegemma-test", "1")
        await client.start_io(shutil.which("node"), str(AGENT), "--lsp", "--stdio",
                              env={**os.environ, "HOME": str(home)})
        try:
            await asyncio.wait_for(client.initialize_async(T.InitializeParams(
                capabilities=T.ClientCapabilities(), root_uri=tmp_path.as_uri(),
                client_info=T.ClientInfo(name="codegemma-test"))), 60)
            client.initialized(T.InitializedParams())
            uri = (tmp_path / "main.py").as_uri()
            client.text_document_did_open(T.DidOpenTextDocumentParams(
                T.TextDocumentItem(uri=uri, language_id="python", version=1, text=source)))
            for _ in range(20):  # the agent connects (health check) in the background
                result = await asyncio.wait_for(client.text_document_completion_async(T.CompletionParams(
                    T.TextDocumentIdentifier(uri), T.Position(line, character),
                    T.CompletionContext(T.CompletionTriggerKind.Invoked))), 60)
                items = result.items if isinstance(result, T.CompletionList) else (result or [])
                if items:
                    return items
                await asyncio.sleep(0.5)
            return []
        finally:
            await client.shutdown_async(None)
            client.exit(None)
            await client.stop()

    items = asyncio.run(main())
    records = [json.loads(r) for r in (tmp_path / "events.jsonl").read_text().splitlines()]
    completions = [r for r in records if r["type"] == "completion"]
    assert completions, "tabby-agent never asked our server for a completion"
    texts = {c["text"] for r in completions for c in r["choices"] if c["text"]}
    shown = {getattr(i.text_edit, "new_text", None) or i.insert_text or i.label for i in items}
    assert not texts or any(t.strip() and any(t.strip() in s for s in shown) for t in texts)
