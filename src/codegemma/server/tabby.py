"""The Tabby dialect: /v1/health, /v1beta/server_setting, /v1/events, and Tabby's completion request.

Tabby's agent posts completions to /v1/completions, the path OpenAI's clients use: openai.py hands a body
with a `segments` object to `complete` here. Tabby formats editor context as comment lines; we give the
declarations and snippets to the model as CodeGemma's multi-file context (`path\\ncode<|file_separator|>`),
the format it was trained on, highest priority nearest the code: declarations, then snippets of changed
files, then of recently opened ones (Tabby's own order). Every completion and every view, select and
dismiss event is appended to a JSONL log that `codegemma stats` reads.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .. import __version__
from ..prompts import ContextFile, FimRequest
from . import schemas as S
from .engine import INTERACTIVE
from .service import ApiError, Server, get_server

router = APIRouter()

MAX_TOKENS = 64  # Tabby's default max_decoding_tokens
# Tabby's stop words (tabby-common/assets/languages.toml): a blank line, a line comment, a top-level keyword
BLANK_LINES = ("\n\n",)
LANGUAGES = {
    "python": ("#", ["def", "from", "class", "import"]),
    "rust": ("//", ["fn", "trait", "impl", "enum", "pub", "extern", "static", "unsafe", "use"]),
    "java": ("//", ["abstract", "public", "private", "class", "const", "exports", "extends", "implements", "static",
                    "import", "interface", "module", "package", "var", "enum", "return"]),
    "kotlin": ("//", ["abstract", "public", "private", "companion", "class", "data", "const", "actual", "expect",
                      "sealed", "suspend", "fun", "import", "interface", "package", "var", "val", "enum"]),
    "javascript": ("//", ["abstract", "async", "class", "const", "export", "function", "interface", "module",
                          "package", "type", "var", "enum", "let"]),
    "go": ("//", ["func", "interface", "struct", "package", "type", "import", "var", "const"]),
    "ruby": ("#", ["begin", "class", "def", "end", "ensure", "include", "module", "require", "rescue", "self"]),
    "c": ("//", ["const", "enum", "extern", "inline", "register", "static", "struct", "typedef", "union",
                 "volatile"]),
    "cpp": ("//", ["auto", "class", "const", "concept", "enum", "extern", "inline", "namespace", "register", "static",
                   "struct", "template", "typedef", "union", "volatile"]),
    "csharp": ("//", ["class", "struct", "enum", "interface", "abstract", "static", "extern", "namespace", "using",
                      "var", "dynamic", "async"]),
}
ALIASES = {"typescript": "javascript", "javascriptreact": "javascript", "typescriptreact": "javascript",
           "javascript-typescript": "javascript"}
EVENT_TYPES = ("view", "select", "dismiss")


def stop_words(language: str | None) -> tuple[str, ...]:
    """Where Tabby ends a completion in this language (VS Code language identifiers)."""
    comment, keywords = LANGUAGES.get(ALIASES.get(language or "", language or ""), (None, []))
    return BLANK_LINES + ((f"\n{comment}",) if comment else ()) + tuple(f"\n{k}" for k in keywords)


def context_files(segments: S.TabbySegments) -> tuple[ContextFile, ...]:
    """The editor's snippets as context files, lowest priority first (the prompt builder drops the first
    ones when over budget, and the last ones sit nearest the code)."""
    groups = [segments.relevant_snippets_from_recently_opened_files, segments.relevant_snippets_from_changed_files,
              segments.declarations]
    ordered = [ContextFile(s.filepath, s.body) for group in groups for s in reversed(group or [])  # most relevant
               if s.body.strip() and s.filepath != segments.filepath]                              # first in Tabby's
    kept = {f: i for i, f in enumerate(ordered)}  # a snippet sent twice stays where it matters most (the last)
    return tuple(f for i, f in enumerate(ordered) if kept[f] == i)


async def complete(server: Server, body: S.TabbyCompletionRequest, request: Request) -> dict:
    """Tabby's completion: `{id, choices: [{index, text}]}` (and `debug_data` when asked)."""
    if body.mode != "standard":
        raise ApiError(400, f"completion mode {body.mode!r} is not supported; use 'standard'")
    debug = body.debug_options or S.TabbyDebugOptions()
    files: tuple[ContextFile, ...] = ()
    if debug.raw_prompt is not None:
        ids, stop, stop_ids = server.encode_templated(debug.raw_prompt), (), ()
    elif body.segments is not None:
        seg = body.segments
        if not debug.disable_retrieval_augmented_code_completion:
            files = context_files(seg)
        fim = server.fim(FimRequest(seg.prefix, seg.suffix or "", path=seg.filepath, context=files))
        ids, stop, stop_ids = fim.ids, fim.stop + stop_words(body.language), fim.stop_ids
    else:
        raise ApiError(400, "a Tabby completion needs `segments` (or `debug_options.raw_prompt`)")
    options = server.options(server.limit(MAX_TOKENS, len(ids), MAX_TOKENS), temperature=body.temperature,
                             seed=body.seed, stop=stop, stop_ids=stop_ids)
    started = time.perf_counter()
    job = server.start(ids, options, request, priority=INTERACTIVE)
    text, summary = await server.collect(job, request)
    completion_id = f"cmpl-{uuid.uuid4()}"
    choices = [{"index": 0, "text": text}]
    server.events_log.append({"type": "completion", "completion_id": completion_id, "language": body.language,
                              "user": body.user, "user_agent": request.headers.get("user-agent"),
                              "prompt_tokens": summary["prompt_tokens"],
                              "completion_tokens": summary["completion_tokens"],
                              "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                              "context_files": len(files), "choices": choices})
    out: dict = {"id": completion_id, "choices": choices}
    if debug.return_snippets or debug.return_prompt:
        out["debug_data"] = {}
        if debug.return_snippets:
            out["debug_data"]["snippets"] = [{"filepath": f.path, "body": f.text, "score": 1.0} for f in files]
        if debug.return_prompt:
            out["debug_data"]["prompt"] = server.cg.tokenizer.decode(ids)
    return out


@router.get("/v1/health")
async def health(server: Server = Depends(get_server)) -> dict:
    """Tabby's HealthState; tabby-agent needs `model` and `device`, and reads `version.git_describe`."""
    device = server.cg.device.type
    return {"model": server.name, "chat_model": server.name, "device": device, "arch": platform.machine(),
            "cpu_info": _cpu_name(), "cpu_count": os.cpu_count() or 1,
            "cuda_devices": [] if device != "cuda" else [str(server.cg.device)],
            "version": {"build_date": "", "build_timestamp": "", "git_sha": "", "git_describe": f"v{__version__}"},
            "webserver": False}


@router.get("/v1beta/server_setting")
async def server_setting() -> dict:
    return {"disable_client_side_telemetry": True}


@router.post("/v1/events")
async def events(body: S.TabbyEvent, request: Request, server: Server = Depends(get_server)) -> Response:
    if body.type not in EVENT_TYPES:
        raise ApiError(400, f"event type {body.type!r} is not one of {', '.join(EVENT_TYPES)}")
    record = {"type": body.type, "completion_id": body.completion_id, "choice_index": body.choice_index,
              "view_id": body.view_id, "elapsed": body.elapsed}
    kind = request.query_params.get("select_kind") or (body.model_extra or {}).get("select_kind")
    if body.type == "select" and kind == "line":
        record["select_kind"] = "line"
    server.events_log.append(record)
    return Response(status_code=200)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
