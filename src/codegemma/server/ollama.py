"""The Ollama dialect: /api/generate (with `suffix` for FIM), /api/chat, /api/tags, /api/show, /api/ps,
/api/version."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Request

from ..api import Options
from ..prompts import FIM_STOP_TOKENS, FimRequest, fim_layout, render
from . import schemas as S
from .engine import CHAT, INTERACTIVE, Job
from .service import Server, finish_reason, get_server, now_iso, stream_response

OLLAMA_VERSION = "0.9.0"  # the Ollama API level these routes follow
LICENSE = "Gemma Terms of Use (https://ai.google.dev/gemma/terms); the weights' own licence governs"

router = APIRouter()


def _options(server: Server, o: S.OllamaOptions | None, prompt_len: int, stop_ids: tuple[int, ...],
             extra_stop: tuple[str, ...] = ()) -> Options:
    o = o or S.OllamaOptions()
    return server.options(server.limit(o.num_predict, prompt_len, -1), temperature=o.temperature, top_p=o.top_p,
                          top_k=o.top_k, min_p=o.min_p, repeat_penalty=o.repeat_penalty, seed=o.seed,
                          stop=server.stops(o.stop) + extra_stop, stop_ids=stop_ids)


def _final(server: Server, summary: dict, extra: dict) -> dict:
    total = int(summary.get("seconds", 0) * 1e9)
    prompt = int(summary.get("prompt_seconds", 0) * 1e9)
    return {"model": server.name, "created_at": now_iso(), **extra, "done": True,
            "done_reason": finish_reason(summary["finish_reason"]), "total_duration": total, "load_duration": 0,
            "prompt_eval_count": summary["prompt_tokens"], "prompt_eval_duration": prompt,
            "eval_count": summary["completion_tokens"], "eval_duration": total - prompt}


async def _respond(server: Server, job: Job, request: Request, stream: bool, piece: Callable[[str], dict]):
    if stream:
        return stream_response(server, job, request, sse=False,
                               piece=lambda text: {"model": server.name, "created_at": now_iso(), **piece(text),
                                                   "done": False},
                               final=lambda summary: [_final(server, summary, piece(""))])
    text, summary = await server.collect(job, request)
    return _final(server, summary, piece(text))


@router.post("/api/generate")
async def generate(body: S.OllamaGenerateRequest, request: Request, server: Server = Depends(get_server)):
    if not body.prompt and body.suffix is None and not body.system:  # Ollama's "load the model" call
        return {"model": server.name, "created_at": now_iso(), "response": "", "done": True, "done_reason": "load"}
    if body.suffix is not None:
        fim = server.fim(FimRequest(body.prompt, body.suffix))
        ids, stop_ids, extra = fim.ids, fim.stop_ids, fim.stop
    else:
        # Ollama tokenizes a prompt with special tokens parsed, raw or not (its template is {{ .Prompt }});
        # Tabby and llm-ls send FIM-templated text without `raw`
        text = f"{body.system}\n\n{body.prompt}" if body.system and not body.raw else body.prompt
        ids, stop_ids, extra = server.encode_templated(text), (), ()
    job = server.start(ids, _options(server, body.options, len(ids), stop_ids, extra), request, priority=INTERACTIVE)
    return await _respond(server, job, request, body.stream, lambda text: {"response": text})


@router.post("/api/chat")
async def chat(body: S.OllamaChatRequest, request: Request, server: Server = Depends(get_server)):
    ids = server.encode_chat([{"role": m.role, "content": m.content} for m in body.messages])
    job = server.start(ids, _options(server, body.options, len(ids), server.chat_stop_ids()), request,
                       priority=CHAT)
    return await _respond(server, job, request, body.stream,
                          lambda text: {"message": {"role": "assistant", "content": text}})


@router.get("/api/tags")
async def tags(server: Server = Depends(get_server)) -> dict:
    return {"models": [_model(server, name) for name in server.names]}


@router.get("/api/ps")
async def ps(server: Server = Depends(get_server)) -> dict:
    """Loaded models: the one served, always loaded (it never expires)."""
    expires = (datetime.now(timezone.utc) + timedelta(days=3650)).isoformat().replace("+00:00", "Z")
    return {"models": [{**_model(server, server.name), "expires_at": expires, "size_vram": 0}]}


@router.post("/api/show")
async def show(body: S.OllamaShowRequest, server: Server = Depends(get_server)) -> dict:
    fim = server.cg.fim_native
    psm = render(fim_layout("psm", "{{ .Prompt }}", "{{ .Suffix }}"))  # the layout build_fim sends
    template = "{{- if .Suffix }}" + psm + "{{- else }}{{ .Prompt }}{{- end }}" if fim else "{{ .Prompt }}"
    c = server.cg.config
    return {"modelfile": f"FROM {server.name}\n", "parameters": _parameters(server), "template": template,
            "license": LICENSE, "details": _model(server, server.name)["details"],
            "model_info": {"general.architecture": c.model_type, f"{c.model_type}.context_length": server.ctx,
                           f"{c.model_type}.embedding_length": c.hidden_size,
                           f"{c.model_type}.block_count": c.num_hidden_layers},
            "capabilities": ["completion", "insert"] if fim else ["completion"], "modified_at": now_iso()}


@router.get("/api/version")
async def version() -> dict:
    return {"version": OLLAMA_VERSION}


def _parameters(server: Server) -> str:
    """Modelfile parameters as Ollama prints them; Continue reads num_ctx and stop from here."""
    stops = [t for t in FIM_STOP_TOKENS if t != "<eos>" and server.cg.tokenizer.token_id(t) is not None]
    lines = [("num_ctx", str(server.ctx)), *(("stop", f'"{t}"') for t in stops), ("temperature", "0"),
             ("repeat_penalty", "1")]
    return "\n".join(f"{key:<30} {value}" for key, value in lines)


def _model(server: Server, name: str) -> dict:
    params = sum(p.numel() for p in server.cg.model.parameters())
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return {"name": name, "model": name, "modified_at": now_iso(), "size": params,
            "digest": uuid.uuid5(uuid.NAMESPACE_URL, server.name).hex,
            "details": {"format": server.cg.source_format or "safetensors",
                        "family": server.cg.config.model_type, "families": [server.cg.config.model_type],
                        "parameter_size": size,
                        "quantization_level": str(server.cg.model.dtype).removeprefix("torch.")}}
