"""The llama.cpp server dialect: /infill (llama.vim, llama.vscode), /completion, /health, /props, /slots,
/metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from .. import __version__
from ..api import Options
from ..prompts import ContextFile, FimRequest
from . import schemas as S
from .engine import BACKGROUND, INTERACTIVE, Job
from .service import ApiError, Server, candidates, get_server, stream_response

router = APIRouter()


def _options(server: Server, body: S.LlamaCommon, prompt_len: int, stop_ids: tuple[int, ...] = (),
             extra_stop: tuple[str, ...] = (), seed_offset: int = 0) -> Options:
    seed = None if body.seed is None or body.seed < 0 else body.seed + seed_offset
    return server.options(server.limit(body.n_predict, prompt_len, -1), temperature=body.temperature,
                          top_p=body.top_p, top_k=body.top_k, min_p=body.min_p, repeat_penalty=body.repeat_penalty,
                          seed=seed, stop=tuple(body.stop or ()) + extra_stop, stop_ids=stop_ids)


def _job_args(body: S.LlamaCommon) -> dict:
    """Priority (a cache fill, n_predict 0, is background work) and llama.cpp's stop rules, for server.start."""
    return {"priority": BACKGROUND if body.n_predict == 0 else INTERACTIVE, "n_indent": body.n_indent,
            "time_limit_ms": float(body.t_max_predict_ms)}


async def _respond(server: Server, request: Request, body: S.LlamaCommon, ids: list[int],
                   make_options, truncated: bool = False):
    """One answer, or with n_cmpl > 1 an array of candidates (each reuses the prompt's cached prefill)."""
    if body.n_cmpl > 1 and body.stream:
        raise ApiError(400, "n_cmpl > 1 needs stream: false")
    if body.stream:
        job = server.start(ids, make_options(0), request, **_job_args(body))
        return stream_response(server, job, request, sse=True, piece=lambda text: {"content": text, "stop": False},
                               final=lambda summary: [_final(server, job, body, "", summary, truncated, 0)])
    done = await candidates(server, request, ids, make_options, body.n_cmpl, **_job_args(body))
    answers = [_final(server, job, body, text, summary, truncated, i) for i, (job, text, summary) in enumerate(done)]
    return answers[0] if body.n_cmpl == 1 else answers


def _final(server: Server, job: Job, body: S.LlamaCommon, text: str, summary: dict, truncated: bool,
           index: int) -> dict:
    out = {"index": index, "content": text, "stop": True, "model": server.name, "truncated": truncated,
           "tokens_predicted": summary["completion_tokens"], "tokens_evaluated": summary["prompt_tokens"],
           "tokens_cached": summary.get("cached_tokens", 0),
           "stop_type": "eos" if summary["finish_reason"] == "stop" else "limit",
           "generation_settings": _generation_settings(server, job.options, job), "timings": _timings(summary)}
    return _response_fields(out, body.response_fields)


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.post("/infill")
async def infill(body: S.InfillRequest, request: Request, server: Server = Depends(get_server)):
    files = tuple(ContextFile(f.filename, f.text) for f in body.input_extra)
    fim = server.fim(FimRequest(body.input_prefix, body.input_suffix, context=files, middle_start=body.prompt))
    return await _respond(server, request, body, fim.ids,
                          lambda i: _options(server, body, len(fim.ids), fim.stop_ids, fim.stop, i), fim.truncated)


@router.post("/completion")
async def completion(body: S.LlamaCompletionRequest, request: Request, server: Server = Depends(get_server)):
    if isinstance(body.prompt, list):
        ids = list(body.prompt)
        if max(ids) >= server.cg.tokenizer.vocab_size:
            raise ApiError(400, f"token id {max(ids)} is outside the vocabulary")
    else:
        ids = server.encode_templated(body.prompt)
    return await _respond(server, request, body, ids, lambda i: _options(server, body, len(ids), seed_offset=i))


@router.get("/props")
async def props(server: Server = Depends(get_server)) -> dict:
    defaults = server.options(server.limit(-1, 1, -1))
    return {"default_generation_settings": _generation_settings(server, defaults),
            "total_slots": server.engine.parallel,
            "model_path": server.name, "build_info": f"codegemma {__version__}",
            "modalities": {"vision": False, "audio": False}}


@router.get("/slots")
async def slots(server: Server = Depends(get_server)) -> list[dict]:
    return server.engine.slots()


@router.get("/metrics")
async def metrics(server: Server = Depends(get_server)) -> PlainTextResponse:
    """Prometheus text, with llama.cpp's metric names."""
    stats, engine = server.engine.stats, server.engine
    rows = [("prompt_tokens_total", "counter", "Prompt tokens processed.", stats.prefilled_tokens),
            ("tokens_predicted_total", "counter", "Generated tokens.", stats.generated_tokens),
            ("prompt_tokens_cached_total", "counter", "Prompt tokens reused from the cache.", stats.reused_tokens),
            ("requests_total", "counter", "Requests run.", stats.requests),
            ("requests_cancelled_total", "counter", "Requests cancelled or superseded.", stats.cancelled),
            ("requests_processing", "gauge", "Requests being processed.",
             sum(s["is_processing"] for s in engine.slots())),
            ("requests_deferred", "gauge", "Requests waiting.", engine.waiting)]
    lines = []
    for name, kind, help_, value in rows:
        lines += [f"# HELP llamacpp:{name} {help_}", f"# TYPE llamacpp:{name} {kind}", f"llamacpp:{name} {value}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _timings(summary: dict) -> dict:
    """llama.cpp's `timings`: prefill (prompt_*) and generation (predicted_*), in ms, per token and per second."""
    prompt_n = summary["prompt_tokens"] - summary.get("cached_tokens", 0)
    predicted_n = summary["completion_tokens"]
    prompt_ms = summary.get("prompt_seconds", 0.0) * 1000
    predicted_ms = max(summary.get("seconds", 0.0) * 1000 - prompt_ms, 0.0)

    def rates(n: int, ms: float) -> tuple[float, float]:
        return (ms / n if n else 0.0), (n * 1000 / ms if ms > 0 else 0.0)

    prompt_per_token_ms, prompt_per_second = rates(prompt_n, prompt_ms)
    predicted_per_token_ms, predicted_per_second = rates(predicted_n, predicted_ms)
    return {"cache_n": summary.get("cached_tokens", 0), "prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_per_token_ms, "prompt_per_second": prompt_per_second,
            "predicted_n": predicted_n, "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_per_token_ms, "predicted_per_second": predicted_per_second}


def _generation_settings(server: Server, o: Options, job: Job | None = None) -> dict:
    """llama.cpp's `generation_settings` (llama.vscode reads n_ctx from every answer)."""
    return {"n_ctx": server.ctx, "n_predict": o.max_tokens, "model": server.name, "seed": o.seed,
            "temperature": o.temperature, "top_k": o.top_k, "top_p": o.top_p, "min_p": o.min_p,
            "repeat_penalty": o.repetition_penalty, "stop": list(o.stop), "n_indent": job.n_indent if job else 0,
            "t_max_predict_ms": job.time_limit_ms if job else 0, "stream": False,
            "samplers": ["penalties", "top_k", "top_p", "min_p", "temperature"]}


def _response_fields(response: dict, fields: list[str] | None) -> dict:
    """llama.cpp's `response_fields`: only these paths ("a/b" reaches into objects), keyed by the path."""
    if not fields:
        return response
    out = {}
    for path in fields:
        value: Any = response
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            out[path] = value
    return out
