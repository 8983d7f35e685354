"""`codegemma lsp`: a language server (pygls, stdio) for editors that speak LSP inline completion natively.

It answers `textDocument/inlineCompletion` (LSP 3.18: Neovim 0.12, Emacs) and `textDocument/completion`
(one item, for editors without inline completion, e.g. Helix). The documents the editor has open become
CodeGemma's multi-file context, the most recently edited nearest the code. A newer completion request
cancels the one in flight (as does `$/cancelRequest`), so the newest keystroke wins. The model runs
in-process on the server's engine (continuous batching, prompt cache), or a running `codegemma serve`
does the work (`--server URL`, its llama.cpp `/infill` route).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer

from . import __version__
from .api import CodeGemma, Options
from .prompts import ContextFile, FimRequest, PromptError, build_fim

logger = logging.getLogger(__name__)

MAX_TOKENS = 128
RESERVE = 0.25  # share of the window a prompt leaves for generation (as the server's FIM_RESERVE)


class Completer:
    """Where completions come from: `complete` returns the middle, or raises CancelledError."""

    async def complete(self, req: FimRequest) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class EngineCompleter(Completer):
    """In-process: the serving engine, jobs of one client (each supersedes the last)."""

    def __init__(self, cg: CodeGemma, ctx: int, max_tokens: int, thread: bool) -> None:
        from .server.engine import Engine

        self.cg, self.ctx, self.max_tokens = cg, min(ctx, cg.config.max_position_embeddings), max_tokens
        self.engine = Engine(cg, ctx=self.ctx, parallel=2, thread=thread)

    async def complete(self, req: FimRequest) -> str:
        from .server.engine import Job

        fim = build_fim(self.cg.tokenizer, req, budget=self.ctx - int(self.ctx * RESERVE))
        limit = min(self.max_tokens, self.ctx - len(fim.ids))
        job = Job(fim.ids, Options(max_tokens=limit, stop=fim.stop, stop_ids=fim.stop_ids),
                  asyncio.get_running_loop(), client="lsp")
        self.engine.submit(job)
        text = []
        try:
            while (event := await job.events.get())[0] != "done":
                if event[0] == "error":
                    raise RuntimeError(event[1])
                text.append(event[1])
        except asyncio.CancelledError:
            job.cancel()
            raise
        return "".join(text)

    def close(self) -> None:
        self.engine.close()


class ServerCompleter(Completer):
    """Forwards to a running `codegemma serve` (or llama.cpp's server): POST /infill; a cancelled request
    closes its connection, which stops the generation there."""

    def __init__(self, url: str, max_tokens: int) -> None:
        import httpx

        self.url, self.max_tokens = url.rstrip("/"), max_tokens
        self.client = httpx.AsyncClient(timeout=None)

    async def complete(self, req: FimRequest) -> str:
        body = {"input_prefix": req.prefix, "input_suffix": req.suffix, "n_predict": self.max_tokens,
                "input_extra": [{"filename": f.path, "text": f.text} for f in req.context]}
        r = await self.client.post(f"{self.url}/infill", json=body)
        r.raise_for_status()
        return r.json()["content"]


def build_server(completer: Completer, repo=None) -> LanguageServer:
    """repo: a repo.RepoIndex whose chunks most related to the cursor join the open documents as context."""
    server = LanguageServer("codegemma", __version__)
    edited: dict[str, int] = {}  # uri -> when last opened or changed (a counter)
    clock = itertools.count()
    current: list[asyncio.Task] = []  # the completion in flight: a newer one cancels it

    def touch(uri: str) -> None:
        edited[uri] = next(clock)

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: T.DidOpenTextDocumentParams) -> None:
        touch(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: T.DidChangeTextDocumentParams) -> None:
        touch(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: T.DidCloseTextDocumentParams) -> None:
        edited.pop(params.text_document.uri, None)

    def request(ls: LanguageServer, uri: str, position: T.Position) -> FimRequest:
        doc = ls.workspace.get_text_document(uri)
        offset = doc.offset_at_position(position)
        root = ls.workspace.root_path
        others = sorted((u for u in edited if u != uri), key=edited.__getitem__)  # most recent last
        context = tuple(ContextFile(_path(u, root), ls.workspace.get_text_document(u).source) for u in others)
        if repo is not None:  # farther from the code than the documents the editor has open
            open_paths = {f.path for f in context} | {_path(uri, root)}
            found = repo.related(doc.source[:offset], doc.source[offset:], _path(uri, root))
            context = tuple(f for f in found if f.path not in open_paths) + context
        return FimRequest(doc.source[:offset], doc.source[offset:], path=_path(uri, root), context=context)

    async def newest(req: FimRequest) -> str | None:
        """The completion, or None when a newer request or the editor cancelled this one."""
        for task in current:
            task.cancel()
        task = asyncio.ensure_future(completer.complete(req))
        current[:] = [task]
        try:
            return await task
        except asyncio.CancelledError:
            task.cancel()
            return None
        except PromptError as exc:
            logger.warning("no completion: %s", exc)
            return None

    @server.feature(T.TEXT_DOCUMENT_INLINE_COMPLETION, T.InlineCompletionOptions())
    async def inline(ls: LanguageServer, params: T.InlineCompletionParams) -> T.InlineCompletionList | None:
        text = await newest(request(ls, params.text_document.uri, params.position))
        if not text:
            return T.InlineCompletionList(items=[])
        where = T.Range(start=params.position, end=params.position)
        return T.InlineCompletionList(items=[T.InlineCompletionItem(insert_text=text, range=where)])

    @server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=[]))
    async def completion(ls: LanguageServer, params: T.CompletionParams) -> T.CompletionList:
        text = await newest(request(ls, params.text_document.uri, params.position))
        if not text or not text.strip():
            return T.CompletionList(is_incomplete=True, items=[])
        first = next(line for line in text.splitlines() if line.strip())
        here = T.Range(start=params.position, end=params.position)
        item = T.CompletionItem(label=first.strip()[:80], kind=T.CompletionItemKind.Text, detail="codegemma",
                                text_edit=T.TextEdit(range=here, new_text=text), sort_text="0",
                                filter_text=first.strip())
        return T.CompletionList(is_incomplete=True, items=[item])

    @server.feature(T.SHUTDOWN)
    def shutdown(ls: LanguageServer, params: None) -> None:
        for task in current:
            task.cancel()

    return server


def _path(uri: str, root: str | None) -> str:
    """A document's path for the prompt: relative to the workspace root where it lies inside it."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return uri
    path = Path(unquote(parsed.path))
    if root:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def serve_stdio(completer: Completer, engine_runs_here: bool, repo=None) -> None:
    """Speaks LSP on stdin/stdout until the editor exits. With an in-process engine started without its own
    thread, the engine keeps this (the loading) thread and LSP runs on another (see Engine.run)."""
    server = build_server(completer, repo)
    if not engine_runs_here:
        try:
            server.start_io()
        finally:
            completer.close()
        return
    engine = completer.engine  # type: ignore[attr-defined]

    def lsp() -> None:
        try:
            server.start_io()
        finally:
            engine.close()

    thread = threading.Thread(target=lsp, name="codegemma-lsp", daemon=True)
    thread.start()
    engine.run()
    thread.join(timeout=5)
