"""Every prompt this package builds: FIM (PSM, SPM), multi-file context, left to right, and Gemma's chat turns.

A prompt is a list of segments: plain text (tokenized without parsing special tokens, since it comes
from a user's files) and `Special` tokens. Each text segment is tokenized on its own, as CodeGemma's
FIM training tokenized prefix, middle and suffix separately. `render` gives the documented text form;
`build_fim` gives the token ids that the API, the CLI, every server dialect and the evaluation send,
cut to a token budget nearest the cursor. The data pipeline lays out its FIM training documents with
`fim_layout` and the SFT data its turns with `chat_turns` and `turn_prompt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import CodeGemmaError
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

# FIM layouts: the order of sentinels and code. PSM is documented (arXiv 2406.11409, section 2.1);
# CodeGemma's SPM layout is unconfirmed, so both published candidates are offered.
FIM_LAYOUTS: dict[str, tuple[str, ...]] = {
    "psm": (FIM_PREFIX, "prefix", FIM_SUFFIX, "suffix", FIM_MIDDLE),
    "spm": (FIM_SUFFIX, "suffix", FIM_PREFIX, "prefix", FIM_MIDDLE),  # suffix first
    "spm-bavarian": (FIM_PREFIX, FIM_SUFFIX, "suffix", FIM_MIDDLE, "prefix"),  # Bavarian et al. 2022, appendix D
}
FIM_MODES = tuple(FIM_LAYOUTS)
FIM_STOP_TOKENS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEPARATOR, "<eos>", END_OF_TURN)
# When both must be cut, the prefix keeps 3/4 of the room and the suffix 1/4, as llama.cpp's server
# splits an infill prompt (tools/server: n_prefix_take = min(prefix, 3 * (n_batch / 4))).
PREFIX_SHARE = 0.75
CONTEXT_SHARE = 0.5  # of a token budget, the most that context files may take


class PromptError(CodeGemmaError, ValueError):
    """A prompt that cannot be built (bad roles, unknown layout)."""


class PromptTooLong(PromptError):
    """A prompt whose fixed parts do not fit the token budget."""


@dataclass(frozen=True)
class ContextFile:
    """Another file of the repository, shown to the model before the one being completed."""

    path: str
    text: str


@dataclass(frozen=True)
class FimRequest:
    """A completion between prefix and suffix, as an editor asks for it."""

    prefix: str
    suffix: str = ""
    path: str | None = None  # the file's path, written on a line before the FIM prompt
    context: tuple[ContextFile, ...] = ()  # other files, nearest the cursor last
    mode: str = "psm"
    middle_start: str = ""  # text the middle must start with (llama.cpp's /infill "prompt")


@dataclass(frozen=True)
class FimPrompt:
    """Token ids for a FimRequest, with what stops the completion."""

    ids: list[int]
    stop_ids: tuple[int, ...]
    stop: tuple[str, ...]  # stop strings: the suffix's first line, for a model without FIM tokens
    truncated: bool  # context files dropped or code cut to fit the budget
    native: bool  # FIM tokens used; else the prefix is continued left to right


def fim_layout(mode: str, prefix: str, suffix: str) -> Prompt:
    """The sentinels and code of one FIM layout; the model (or training data) writes the middle next."""
    if mode not in FIM_LAYOUTS:
        raise PromptError(f"unknown FIM mode {mode!r}; choose one of {', '.join(FIM_MODES)}")
    code = {"prefix": prefix, "suffix": suffix}
    out = [code[part] if part in code else Special(part) for part in FIM_LAYOUTS[mode]]
    return [seg for seg in out if seg != ""]


def _context_block(f: ContextFile, native: bool) -> Prompt:
    """A FIM model sees `path\\ntext<|file_separator|>` (the training format); others `path\\ntext\\n\\n`."""
    return [f"{f.path}\n{f.text}", Special(FILE_SEPARATOR)] if native else [f"{f.path}\n{f.text}\n\n"]


def _path_line(path: str | None) -> Prompt:
    return [f"{path}\n"] if path else []


def fim_prompt(prefix: str, suffix: str = "", *, path: str | None = None, mode: str = "psm",
               context: Iterable[ContextFile] = (), middle_start: str = "") -> Prompt:
    """The FIM prompt of a model with FIM tokens (see `build_fim` for ids).

    psm:          [path\\n]<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>
    spm:          [path\\n]<|fim_suffix|>{suffix}<|fim_prefix|>{prefix}<|fim_middle|>
    spm-bavarian: [path\\n]<|fim_prefix|><|fim_suffix|>{suffix}<|fim_middle|>{prefix}
    Context files come first as path\\n{text}<|file_separator|> each.
    """
    out: Prompt = [seg for f in context for seg in _context_block(f, True)]
    out += _path_line(path) + fim_layout(mode, prefix, suffix)
    return out + ([middle_start] if middle_start else [])


def left_to_right_prompt(prefix: str, *, path: str | None = None, context: Iterable[ContextFile] = (),
                         middle_start: str = "") -> Prompt:
    """For a model without FIM tokens: context files, the path line and the prefix, to be continued."""
    out: Prompt = [seg for f in context for seg in _context_block(f, False)]
    return out + _path_line(path) + [s for s in (prefix, middle_start) if s]


def build_fim(tokenizer: Tokenizer, req: FimRequest, budget: int | None = None) -> FimPrompt:
    """Token ids for `req`, at most `budget` of them (None: no limit).

    To fit, context files may take CONTEXT_SHARE of the budget, whatever the code's length (so that an
    editor's background fill without code keeps the same files as the request that follows it): the
    farthest from the cursor (the first) are dropped first. The code gets the rest: the prefix loses
    its start and the suffix its end, keeping about PREFIX_SHARE of the room for the prefix.
    """
    native = tokenizer.fim is not None
    fim_layout(req.mode, "", "")  # checks the mode
    enc = lambda prompt: encode_prompt(tokenizer, prompt, bos=False)  # noqa: E731
    blocks = [enc(_context_block(f, native)) for f in req.context]
    head, start = enc(_path_line(req.path)), enc([req.middle_start])
    pre, suf = enc([req.prefix]), enc([req.suffix]) if native else []
    truncated = False
    if budget is not None:
        fixed = 1 + len(head) + len(start) + (3 if native else 0)  # <bos>, path line, middle start, sentinels
        while blocks and sum(map(len, blocks)) > int(budget * CONTEXT_SHARE):
            blocks.pop(0)
            truncated = True
        room = budget - fixed - sum(map(len, blocks))
        if room < 1:
            raise PromptTooLong(f"the context window ({budget} tokens for the prompt) is too small for this request")
        cut_pre, cut_suf = _cut(pre, suf, room)
        truncated |= (len(cut_pre), len(cut_suf)) != (len(pre), len(suf))
        pre, suf = cut_pre, cut_suf
    if native:
        code = {"prefix": pre, "suffix": suf}
        body = [t for part in FIM_LAYOUTS[req.mode] for t in code.get(part, [tokenizer.token_id(part)])]
    else:
        body = pre
    ids = [tokenizer.bos_id] + [t for b in blocks for t in b] + head + body + start
    stop = () if native else suffix_stops(req.suffix)
    return FimPrompt(ids, tuple(stop_token_ids(tokenizer, FIM_STOP_TOKENS)), stop, truncated, native)


def _cut(prefix: list[int], suffix: list[int], room: int) -> tuple[list[int], list[int]]:
    """Keeps the tokens nearest the cursor: about PREFIX_SHARE prefix (its end), the rest suffix (its start)."""
    if len(prefix) + len(suffix) <= room:
        return prefix, suffix
    keep_suffix = min(len(suffix), max(room - len(prefix), int(room * (1 - PREFIX_SHARE))))
    keep_prefix = min(len(prefix), room - keep_suffix)
    return (prefix[len(prefix) - keep_prefix:] if keep_prefix else []), suffix[:keep_suffix]


def suffix_stops(suffix: str) -> tuple[str, ...]:
    """Stop strings for left-to-right completion: the suffix's first non-blank line, at a line start."""
    for line in suffix.splitlines():
        if line.strip():
            return ("\n" + line,)
    return ()


def chat_turns(messages: Sequence[Mapping[str, str]], *, open_turn: bool = True) -> list[tuple[str, str]]:
    """(role, content) turns, roles checked and named as Gemma names them ("user", "model").

    There is no system role: system text is folded into the first user turn ("{system}\\n\\n{user}").
    Roles alternate user/model starting with user; with open_turn (a prompt for the model) the last
    turn must be the user's. Content is trimmed, as in Gemma's published template.
    """
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
    if not turns or (open_turn and turns[-1][0] != "user"):
        raise PromptError("the last message must come from the user")
    if system:
        turns[0] = ("user", "\n\n".join(system + [turns[0][1]]))
    return turns


def turn_prompt(role: str, content: str) -> Prompt:
    """One closed turn: <start_of_turn>{role}\\n{content}<end_of_turn>\\n."""
    return [Special(START_OF_TURN), f"{role}\n{content}", Special(END_OF_TURN), "\n"]


def chat_prompt(messages: Sequence[Mapping[str, str]]) -> Prompt:
    """Gemma's chat template, ending with the open model turn (BOS comes from encoding).

    <start_of_turn>user\\n{msg}<end_of_turn>\\n<start_of_turn>model\\n
    """
    out: Prompt = [seg for role, content in chat_turns(messages) for seg in turn_prompt(role, content)]
    return out + [Special(START_OF_TURN), "model\n"]


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
        elif seg:
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


def chat_stop_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """<end_of_turn> where the vocabulary has it (EOS is always a stop)."""
    end = tokenizer.token_id(END_OF_TURN)
    return (end,) if end is not None else ()
