"""The decode loop: prefill once, then one token per step, yielded as it is chosen."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import CodeGemmaError
from ..model import GemmaForCausalLM, Rows
from .sampling import SamplingParams, sample
from .speculate import PromptLookup


class ContextOverflow(CodeGemmaError, ValueError):
    """A prompt that does not fit the model's context window."""


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int = 256
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop_ids: tuple[int, ...] = ()  # generation of a row ends when it produces one of these
    speculate: int = 0  # prompt-lookup drafts of up to this many tokens (one sequence; 0 = off)

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        if self.speculate < 0:
            raise ValueError("speculate must be >= 0")


@dataclass
class Step:
    """One decoding step: the token each row chose (None for rows already finished).

    A consumer may end a row early (a stop string matched) by setting `finished[row]` before
    asking for the next step.
    """

    tokens: list[int | None]
    finished: list[str | None]  # per row: None while running, else "stop" or "length"


def decode_steps(model: GemmaForCausalLM, prompts: Sequence[Sequence[int]], settings: GenerationSettings,
                 *, context: int | None = None) -> Iterator[Step]:
    """Yields one Step per generated token; several prompts run as one left-padded batch.

    Stop tokens are reported (so callers can see them) but never counted as text by the text layer.
    (The server's engine batches sequences of different lengths and ages instead: server/engine.py.)
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    window = context or model.config.max_position_embeddings
    longest = max(len(p) for p in prompts)
    if longest > window:
        raise ContextOverflow(f"the prompt has {longest} tokens; the context window is {window}")
    budget = min(settings.max_tokens, window - longest)
    if budget == 0:
        return
    if len(prompts) == 1 and settings.speculate:
        yield from _speculative_steps(model, list(prompts[0]), settings, budget)
        return
    B, device = len(prompts), model.device
    pads = [longest - len(p) for p in prompts]
    ids = torch.tensor([[0] * n + list(p) for n, p in zip(pads, prompts)], device=device)  # (B, T)
    pad = torch.tensor(pads, device=device)[:, None]
    valid = torch.ones(B, longest + budget, dtype=torch.bool, device=device)
    valid[:, :longest] = torch.arange(longest, device=device)[None] >= pad
    positions = (torch.arange(longest, device=device)[None] - pad).clamp(min=0)
    generator = seeded_generator(settings.sampling.seed, device)
    stop = set(settings.stop_ids)
    finished: list[str | None] = [None] * B
    penalised = settings.sampling.repetition_penalty != 1.0
    seen = ids.clone() if penalised else None  # only the repetition penalty needs the history
    with torch.inference_mode():
        model.setup_cache(B, longest + budget)
        try:
            logits = model(ids, positions=positions, key_valid=valid[:, :longest])[:, -1]
            for step in range(budget):
                nxt = sample(logits, settings.sampling, seen=seen, generator=generator)
                tokens = nxt.tolist()
                out: list[int | None] = [None if f else t for f, t in zip(finished, tokens)]
                for b, t in enumerate(out):
                    if t is not None and t in stop:
                        finished[b] = "stop"
                    elif t is not None and step == budget - 1:
                        finished[b] = "length"
                report = Step(out, list(finished))
                yield report
                finished = report.finished
                if all(finished):
                    return
                if penalised:
                    seen = torch.cat([seen, nxt[:, None]], dim=1)
                slot = longest + step
                pos = (slot - pad)  # (B, 1)
                logits = model(nxt[:, None], start=slot, positions=pos, key_valid=valid[:, :slot + 1])[:, -1]
        finally:
            model.clear_cache()


def _speculative_steps(model: GemmaForCausalLM, prompt: list[int], settings: GenerationSettings,
                       budget: int) -> Iterator[Step]:
    """One sequence, several tokens per forward pass where drafts allow: drafts come from the sequence
    itself (PromptLookup), are verified in one pass of 1 + k rows (decode_rows: each row computed as it
    is alone), and a drafted token is kept only where the token chosen at its place is that token. Every
    token is chosen from the same logits as in plain decoding, with one draw of the generator per token
    chosen, so the output is plain decoding's token for token, greedy or sampled with a seed."""
    params = settings.sampling
    generator = seeded_generator(params.seed, model.device)
    stop = set(settings.stop_ids)
    penalised = params.repetition_penalty != 1.0
    lookup = PromptLookup(prompt, settings.speculate)
    history = list(prompt)
    finished: list[str | None] = [None]
    produced = 0

    def choose(logits: torch.Tensor) -> int:
        seen = torch.tensor([history], device=model.device) if penalised else None
        return int(sample(logits[None], params, seen=seen, generator=generator)[0])

    def emit(token: int) -> Step:
        nonlocal produced
        produced += 1
        history.append(token)
        lookup.append(token)
        if token in stop:
            finished[0] = "stop"
        elif produced == budget:
            finished[0] = "length"
        return Step([token], list(finished))

    with torch.inference_mode():
        cache = model.make_cache(1, len(prompt) + budget, empty=True)
        pos = len(prompt)  # the slot of the next token fed
        token = choose(model(torch.tensor([prompt], device=model.device), cache=cache, row=0)[0, -1])
        while True:
            report = emit(token)
            yield report
            if report.finished[0]:
                return
            draft = lookup.draft(min(settings.speculate, budget - produced - 1))
            feed = [token, *draft]
            logits = model.decode_rows(feed, Rows((0,) * len(feed), tuple(range(pos, pos + len(feed)))), cache)
            pos += 1
            kept = 0
            for i, drafted in enumerate(draft):
                token = choose(logits[i])
                if token != drafted:
                    break
                kept += 1
                report = emit(token)
                yield report
                if report.finished[0]:
                    return
                pos += 1
            else:
                token = choose(logits[len(draft)])
            lookup.verified(len(draft), kept)


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
