"""The FIM transform of one file (Bavarian et al. 2022, as CodeGemma used it), with syntax-aware splits.

A file becomes prefix/middle/suffix at character level. The suffix start is taken, by preference, at
a natural point: the start of a tree-sitter node (share `node_share`) or of a line (`line_share`);
the rest are uniform character positions. The middle start is uniform before it. PSM and SPM are
50/50; each part is tokenized separately and literal sentinel text never becomes a sentinel.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from ..prompts import Prompt, encode_prompt, fim_layout
from ..prompts import render as render_prompt
from ..tokenizer import Tokenizer, TokenizerError
from .languages import language_of, syntax_points


@dataclass(frozen=True)
class FimSettings:
    fim_rate: float = 0.8
    spm_rate: float = 0.5
    node_share: float = 0.5  # suffix starts at a syntax node boundary
    line_share: float = 0.3  # ... at a line start; the remaining share is uniform
    spm_layout: str = "spm"  # "spm": <suf>S<pre>P<mid>M; "spm-bavarian": <pre><suf>S<mid>P M


@dataclass(frozen=True)
class Split:
    mode: str  # "psm", "spm" or "none"
    prefix: str
    middle: str
    suffix: str


def rng_for(seed: int, *keys: str) -> random.Random:
    """A generator that depends only on the seed and the document's identity (so builds are reproducible)."""
    digest = hashlib.sha256("\x00".join([str(seed), *keys]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def split(text: str, path: str, rng: random.Random, settings: FimSettings) -> Split:
    if len(text) < 2 or rng.random() >= settings.fim_rate:
        return Split("none", text, "", "")
    mode = "spm" if rng.random() < settings.spm_rate else "psm"
    roll = rng.random()
    points = None
    if roll < settings.node_share + settings.line_share:
        sp = syntax_points(language_of(path) if roll < settings.node_share else None, text)
        points = sp.nodes if roll < settings.node_share and sp.nodes else sp.lines
    end = rng.choice(points) if points else rng.randint(1, len(text))
    start = rng.randint(0, end)
    return Split(mode, text[:start], text[start:end], text[end:])


def fim_segments(s: Split, layout: str = "spm") -> Prompt:
    """A split file as prompt segments: its FIM layout (PSM, or `layout` for SPM), then the middle."""
    if s.mode == "none":
        return [s.prefix]
    return fim_layout("psm" if s.mode == "psm" else layout, s.prefix, s.suffix) + [s.middle]


def fim_tokens(tokenizer: Tokenizer, s: Split, layout: str = "spm") -> list[int]:
    """Token ids of a split file; parts are encoded separately, never parsing special tokens."""
    if s.mode != "none" and tokenizer.fim is None:
        raise TokenizerError("the tokenizer has no FIM tokens; use --fim-rate 0 or a CodeGemma tokenizer")
    return encode_prompt(tokenizer, fim_segments(s, layout), bos=False)


def render(s: Split, layout: str = "spm") -> str:
    """The same as text, for --keep-text and tests."""
    return render_prompt(fim_segments(s, layout))
