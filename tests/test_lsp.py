"""`codegemma lsp` driven over stdio by a real LSP client (pygls'): open, change, request, cancel, shutdown;
in-process and forwarding to a running server."""

from __future__ import annotations

import asyncio
import sys

import pytest
from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

from codegemma.prompts import ContextFile
from codegemma.server import create_app
from test_server import PREFIX, SUFFIX, LiveServer

HELPER = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"


def position_of(text: str, offset: int) -> T.Position:
    line = text.count("\n", 0, offset)
    return T.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def session(argv: list[str], root, steps) -> dict:
    client = LanguageClient("codegemma-test", "1")
    await client.start_io(sys.executable, "-m", "codegemma.cli", "lsp", *argv)
    out = {}
    try:
        init = await asyncio.wait_for(client.initialize_async(T.InitializeParams(
            capabilities=T.ClientCapabilities(), root_uri=root.as_uri(), workspace_folders=[
                T.WorkspaceFolder(uri=root.as_uri(), name="repo")])), 60)
        out["capabilities"] = init.capabilities
        client.initialized(T.InitializedParams())
        await steps(client, out)
    finally:
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        await client.stop()
    return out


def run_session(argv: list[str], root) -> dict:
    source = PREFIX + SUFFIX
    main_uri, util_uri = (root / "pkg" / "main.py").as_uri(), (root / "pkg" / "util.py").as_uri()
    where = position_of(source, len(PREFIX))

    def inline(client, uri=main_uri, at=where):
        return client.text_document_inline_completion_async(T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=at,
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Automatic)))

    async def steps(client: LanguageClient, out: dict) -> None:
        client.text_document_did_open(T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=util_uri, language_id="python", version=1, text="")))
        client.text_document_did_change(T.DidChangeTextDocumentParams(  # typed in after opening
            text_document=T.VersionedTextDocumentIdentifier(uri=util_uri, version=2),
            content_changes=[T.TextDocumentContentChangePartial(
                range=T.Range(start=T.Position(line=0, character=0), end=T.Position(line=0, character=0)),
                text=HELPER)]))
        client.text_document_did_open(T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=main_uri, language_id="python", version=1, text=source)))
        out["inline"] = await asyncio.wait_for(inline(client), 60)
        out["completion"] = await asyncio.wait_for(client.text_document_completion_async(T.CompletionParams(
            text_document=T.TextDocumentIdentifier(uri=main_uri), position=where)), 60)
        # the newest request wins: an older one still in flight answers nothing
        older, newer = inline(client), inline(client)
        out["older"], out["newer"] = await asyncio.wait_for(asyncio.gather(older, newer), 60)
        params = T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier(uri=main_uri), position=where,
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Automatic))
        cancelled = client.protocol.send_request(T.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="cancel-me")
        client.cancel_request(T.CancelParams(id="cancel-me"))  # $/cancelRequest
        try:
            out["cancelled"] = await asyncio.wait_for(asyncio.wrap_future(cancelled), 60)
        except Exception as exc:  # a cancelled request may also answer with RequestCancelled
            out["cancelled"] = exc

    return asyncio.run(session(argv, root, steps))


def expected(cg, path: str | None) -> str:
    return cg.complete(PREFIX, SUFFIX, path=path, context=[ContextFile("pkg/util.py", HELPER)], max_tokens=16)


@pytest.mark.parametrize("mode", [pytest.param("in-process", marks=pytest.mark.slow), "--server"])
def test_lsp_round_trip(mode, default_model, tmp_path):
    """On the default model (a tiny random CodeGemma ends every completion with this context at once)."""
    cg = default_model
    live = LiveServer(create_app(cg, ctx=4096)) if mode == "--server" else None
    try:
        argv = ["--server", live.url] if live else ["--model", "default", "--dtype", "float32"]
        argv += ["--max-tokens", "16"]
        out = run_session(argv, tmp_path)
    finally:
        if live:
            live.stop()
    caps = out["capabilities"]
    assert caps.inline_completion_provider and caps.completion_provider
    text = expected(cg, None if live else "pkg/main.py")  # llama.cpp's /infill has no field for the file's path
    assert text.strip(), "the model should complete something here"
    assert [i.insert_text for i in out["inline"].items] == [text]
    item = out["completion"].items[0]
    assert item.text_edit.new_text == text and item.label == next(s for s in text.splitlines() if s.strip()).strip()
    assert len(out["older"].items) == 0 and [i.insert_text for i in out["newer"].items] == [text]
    cancelled = out["cancelled"]  # an empty answer, or the RequestCancelled error
    assert isinstance(cancelled, Exception) or len(cancelled["items"] if isinstance(cancelled, dict)
                                                   else cancelled.items) == 0


def test_lsp_refuses_a_bad_server_url():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "codegemma.cli", "lsp", "--server", "localhost:8080"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "--server must be an http(s) URL" in r.stderr


def test_lsp_adds_repository_context(default_model, tmp_path, monkeypatch):
    """`--repo`: the repository's code related to the cursor reaches the prompt (seen by the server it
    forwards to), beside the open documents."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    (repo / "geo").mkdir(parents=True)
    (repo / "geo" / "shapes.py").write_text("def polygon_area(points):\n    return 0.5 * abs(sum(\n        "
                                             "x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:])))\n")
    live = LiveServer(create_app(default_model, ctx=4096))
    source = "from geo.shapes import polygon_area\n\n\ndef report(points):\n    area = polygon_area(points)\n    "

    async def steps(client: LanguageClient, out: dict) -> None:
        uri = (repo / "app.py").as_uri()
        client.text_document_did_open(T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=uri, language_id="python", version=1, text=source)))
        out["inline"] = await asyncio.wait_for(client.text_document_inline_completion_async(T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=position_of(source, len(source)),
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked))), 60)

    try:
        asyncio.run(session(["--server", live.url, "--repo", str(repo), "--max-tokens", "4"], repo, steps))
        prompt = default_model.tokenizer.decode(live.engine.recent[-1])
    finally:
        live.stop()
    assert "def polygon_area(points):" in prompt
