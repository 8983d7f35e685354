"""Editor requests to token ids: FIM with multi-file context, cut to fit the context window near the cursor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..api import CodeGemma, suffix_stops
from ..prompts import FIM_STOP_TOKENS, ContextFile, stop_token_ids
from ..tokenizer import FILE_SEPARATOR, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

PREFIX_SHARE = 0.75  # of the room left for code, when prefix and suffix must both be cut


class PromptTooLong(ValueError):
    """A prompt that cannot be cut to fit (it is not FIM, or the window is smaller than its fixed parts)."""


@dataclass
class FimPrompt:
    ids: list[int]
    stop_ids: tuple[int, ...]
    stop: tuple[str, ...]
    truncated: bool


def _cut(prefix: list[int], suffix: list[int], room: int) -> tuple[list[int], list[int]]:
    """Keeps the tokens nearest the cursor: about 3/4 prefix (its end), 1/4 suffix (its start)."""
    if len(prefix) + len(suffix) <= room:
        return prefix, suffix
    keep_suffix = min(len(suffix), max(room - len(prefix), int(room * (1 - PREFIX_SHARE))))
    keep_prefix = min(len(prefix), room - keep_suffix)
    return (prefix[len(prefix) - keep_prefix:] if keep_prefix else []), suffix[:keep_suffix]


def fim_request(cg: CodeGemma, prefix: str, suffix: str, *, files: Sequence[ContextFile] = (),
                path: str | None = None, middle_start: str = "", budget: int) -> FimPrompt:
    """Prompt ids for completing between prefix and suffix within `budget` tokens.

    Native FIM: [file\\n text <|file_separator|>]... [path\\n] <|fim_prefix|> prefix <|fim_suffix|> suffix
    <|fim_middle|> middle_start. Without FIM tokens: the files, path and prefix left to right. Context
    files are dropped (farthest from the cursor first) before prefix and suffix are cut.
    """
    tok = cg.tokenizer
    enc = lambda text: tok.encode(text, bos=False) if text else []  # noqa: E731
    stops = suffix_stops(suffix)
    stop_ids = tuple(stop_token_ids(tok, FIM_STOP_TOKENS))
    pre, suf, start = enc(prefix), enc(suffix), enc(middle_start)
    head = enc(f"{path}\n") if path else []
    blocks = [enc(f"{f.path}\n{f.text}") + ([tok.token_id(FILE_SEPARATOR)] if cg.fim_native else enc("\n\n"))
              for f in files]
    if cg.fim_native:
        fixed = 1 + len(head) + 3 + len(start)  # <bos>, path line, three FIM tokens, middle start
    else:
        fixed = 1 + len(head) + len(start)
        suf = []
    truncated = False
    while blocks and fixed + sum(map(len, blocks)) + len(pre) + len(suf) > budget:
        blocks.pop(0)
        truncated = True
    room = budget - fixed - sum(map(len, blocks))
    if room < 1:
        raise PromptTooLong(f"the context window ({budget} tokens for the prompt) is too small for this request")
    cut_pre, cut_suf = _cut(pre, suf, room)
    truncated |= (len(cut_pre), len(cut_suf)) != (len(pre), len(suf))
    ids = [tok.bos_id] + [t for b in blocks for t in b] + head
    if cg.fim_native:
        ids += [tok.token_id(FIM_PREFIX), *cut_pre, tok.token_id(FIM_SUFFIX), *cut_suf, tok.token_id(FIM_MIDDLE)]
        ids += start
    else:
        ids += cut_pre + start
    return FimPrompt(ids, stop_ids, stops, truncated)
