"""The OpenAI dialect: /v1/models, /v1/completions (with `suffix` for FIM; Tabby's body goes to tabby.py) and
/v1/chat/completions."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request

from ..api import Options
from ..prompts import FimRequest
from . import schemas as S
from . import tabby
from .engine import CHAT, INTERACTIVE
from .service import ApiError, Server, candidates, finish_reason, get_server, stream_response

router = APIRouter()


@router.get("/v1/models")
async def models(server: Server = Depends(get_server)) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": server.created,
                                        "owned_by": "codegemma"} for name in server.names]}


@router.post("/v1/completions")
async def completions(body: S.AnyCompletionRequest, request: Request, server: Server = Depends(get_server)):
    if isinstance(body, S.TabbyCompletionRequest):
        return await tabby.complete(server, body, request)
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    stop = server.stops(body.stop)
    if body.suffix is not None:  # FIM: prompt and suffix are code, never parsed for special tokens
        fim = server.fim(FimRequest(prompt, body.suffix))
        ids, stop, stop_ids = fim.ids, stop + fim.stop, fim.stop_ids
    else:
        ids, stop_ids = server.encode_templated(prompt), ()
    limit = server.limit(body.max_tokens, len(ids), 16)

    def options(i: int) -> Options:
        seed = None if body.seed is None else body.seed + i
        return server.options(limit, temperature=body.temperature, top_p=body.top_p, seed=seed, stop=stop,
                              stop_ids=stop_ids)

    ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(text: str, reason: str | None = None, index: int = 0) -> dict:
        return {"id": ident, "object": "text_completion", "created": created, "model": server.name,
                "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": reason}]}

    if body.stream:
        _one_stream(body)
        job = server.start(ids, options(0), request, priority=INTERACTIVE)
        return stream_response(server, job, request, piece=lambda text: chunk(text, None),
                               final=lambda summary: _final_chunks(chunk(""), summary, body), sse=True,
                               done_line="data: [DONE]\n\n")
    done = await candidates(server, request, ids, options, body.n, priority=INTERACTIVE)
    choices = [chunk(text, finish_reason(summary["finish_reason"]), i)["choices"][0]
               for i, (_, text, summary) in enumerate(done)]
    return {**chunk(""), "choices": choices, "usage": _total_usage([summary for _, _, summary in done])}


@router.post("/v1/chat/completions")
async def chat(body: S.ChatRequest, request: Request, server: Server = Depends(get_server)):
    messages = [{"role": m.role, "content": _content_text(m.content)} for m in body.messages]
    ids = server.encode_chat(messages)
    limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    limit = server.limit(limit, len(ids), -1)

    def options(i: int) -> Options:
        seed = None if body.seed is None else body.seed + i
        return server.options(limit, temperature=body.temperature, top_p=body.top_p, seed=seed,
                              stop=server.stops(body.stop), stop_ids=server.chat_stop_ids())

    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict, reason: str | None = None) -> dict:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": server.name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

    if body.stream:
        _one_stream(body)
        job = server.start(ids, options(0), request, priority=CHAT)
        return stream_response(server, job, request, piece=lambda text: chunk({"content": text}),
                               final=lambda summary: _final_chunks(chunk({}), summary, body), sse=True,
                               first=[chunk({"role": "assistant", "content": ""})], done_line="data: [DONE]\n\n")
    done = await candidates(server, request, ids, options, body.n, priority=CHAT)
    return {"id": ident, "object": "chat.completion", "created": created, "model": server.name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason(summary["finish_reason"])}
                        for i, (_, text, summary) in enumerate(done)],
            "usage": _total_usage([summary for _, _, summary in done])}


def _one_stream(body: S.OpenAIRequest) -> None:
    if body.n > 1:
        raise ApiError(400, "n > 1 needs stream: false")


def _total_usage(summaries: list[dict]) -> dict:
    """One prompt, several completions: the prompt counted once, as OpenAI does."""
    completion = sum(s["completion_tokens"] for s in summaries)
    prompt = summaries[0]["prompt_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _final_chunks(last: dict, summary: dict, body: S.OpenAIRequest) -> list[dict]:
    """The chunk with the finish reason; with stream_options.include_usage, one more with no choices and
    the token counts."""
    last["choices"][0]["finish_reason"] = finish_reason(summary["finish_reason"])
    if body.stream_options is not None and body.stream_options.include_usage:
        return [last, {**last, "choices": [], "usage": usage(summary)}]
    return [last]


def _content_text(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text or "" for part in content if part.type == "text")


def usage(summary: dict) -> dict:
    p, c = summary["prompt_tokens"], summary["completion_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
