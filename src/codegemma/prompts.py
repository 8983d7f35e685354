"""Prompt formats: FIM (PSM, SPM), multi-file context and the Gemma chat template.

A prompt is a list of segments: plain text (tokenized without parsing special tokens, since it
comes from a user's files) and `Special` tokens. `render` gives the documented text form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .tokenizer import (
    END_OF_TURN,
    FILE_SEPARATOR,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    START_OF_TURN,
    Tokenizer,
    TokenizerError,
)


@dataclass(frozen=True)
class Special:
    text: str  # the token's name, e.g. "<|fim_prefix|>"


Segment = str | Special
Prompt = list[Segment]

# Layouts. PSM is documented; CodeGemma's SPM layout is unconfirmed, so both candidates are offered.
FIM_MODES = ("psm", "spm", "spm-bavarian")
FIM_STOP_TOKENS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEPARATOR, "<eos>", END_OF_TURN)


class PromptError(ValueError):
    """A prompt that cannot be built (bad roles, unknown layout)."""


@dataclass(frozen=True)
class ContextFile:
    """Another file of the repository, shown to the model before the one being completed."""

    path: str
    text: str


def fim_prompt(prefix: str, suffix: str = "", *, path: str | None = None, mode: str = "psm",
               context: Iterable[ContextFile] = ()) -> Prompt:
    """The FIM prompt; the model writes the middle next.

    psm:          [path\\n]<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>
    spm:          [path\\n]<|fim_suffix|>{suffix}<|fim_prefix|>{prefix}<|fim_middle|>
    spm-bavarian: [path\\n]<|fim_prefix|><|fim_suffix|>{suffix}<|fim_middle|>{prefix}
    Context files come first as path\\n{text}<|file_separator|> each.
    """
    if mode not in FIM_MODES:
        raise PromptError(f"unknown FIM mode {mode!r}; choose one of {', '.join(FIM_MODES)}")
    out: Prompt = []
    for f in context:
        out += [f"{f.path}\n{f.text}", Special(FILE_SEPARATOR)]
    if path:
        out.append(f"{path}\n")
    P, M, S = Special(FIM_PREFIX), Special(FIM_MIDDLE), Special(FIM_SUFFIX)
    if mode == "psm":
        out += [P, prefix, S, suffix, M]
    elif mode == "spm":
        out += [S, suffix, P, prefix, M]
    else:
        out += [P, S, suffix, M, prefix]
    return [s for s in out if s != ""]


def chat_prompt(messages: Sequence[Mapping[str, str]]) -> Prompt:
    """Gemma's chat template, ending with the open model turn.

    <start_of_turn>user\\n{msg}<end_of_turn>\\n<start_of_turn>model\\n ... (BOS comes from encoding).
    There is no system role: system text is folded into the first user turn ("{system}\\n\\n{user}").
    Roles must alternate user/model starting and ending with user. Content is trimmed, as in
    Gemma's published template.
    """
    turns = _normalise_roles(messages)
    out: Prompt = []
    for role, content in turns:
        out += [Special(START_OF_TURN), f"{role}\n{content}", Special(END_OF_TURN), "\n"]
    out += [Special(START_OF_TURN), "model\n"]
    return out


def _normalise_roles(messages: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    if not messages:
        raise PromptError("chat needs at least one message")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise PromptError(f"message {i} must be an object with string 'role' and 'content'")
        role = {"assistant": "model"}.get(m["role"], m["role"])
        if role not in ("system", "user", "model"):
            raise PromptError(f"message {i}: unknown role {m['role']!r}; use system, user or assistant/model")
        if role == "system":
            if turns:
                raise PromptError(f"message {i}: a system message may only come first")
            system.append(m["content"].strip())
            continue
        expected = "user" if not turns or turns[-1][0] == "model" else "model"
        if role != expected:
            raise PromptError(f"message {i}: roles must alternate user/model starting with user; got {role} "
                              f"where {expected} was expected")
        turns.append((role, m["content"].strip()))
    if not turns or turns[-1][0] != "user":
        raise PromptError("the last message must come from the user")
    if system:
        turns[0] = ("user", "\n\n".join(system + [turns[0][1]]))
    return turns


def render(prompt: Prompt) -> str:
    """The prompt as text, special tokens written out."""
    return "".join(s.text if isinstance(s, Special) else s for s in prompt)


def encode_prompt(tokenizer: Tokenizer, prompt: Prompt, *, bos: bool = True) -> list[int]:
    """Token ids: text segments never parse special tokens; `Special` segments are single ids."""
    ids = [tokenizer.bos_id] if bos else []
    for seg in prompt:
        if isinstance(seg, Special):
            tid = tokenizer.token_id(seg.text)
            if tid is None:
                raise TokenizerError(f"the tokenizer has no {seg.text} token")
            ids.append(tid)
        else:
            ids += tokenizer.encode(seg, bos=False)
    return ids


def stop_token_ids(tokenizer: Tokenizer, names: Iterable[str]) -> list[int]:
    """Ids of the named stop tokens that this vocabulary has (plus EOS)."""
    ids = {tokenizer.eos_id}
    for name in names:
        tid = tokenizer.token_id(name)
        if tid is not None:
            ids.add(tid)
    return sorted(ids)
