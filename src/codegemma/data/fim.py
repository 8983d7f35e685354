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

from ..tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, Tokenizer, TokenizerError
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


def fim_tokens(tokenizer: Tokenizer, s: Split, layout: str = "spm") -> list[int]:
    """Token ids of a split file; parts are encoded separately, never parsing special tokens."""
    enc = lambda t: tokenizer.encode(t, bos=False) if t else []  # noqa: E731
    if s.mode == "none":
        return enc(s.prefix)
    fim = tokenizer.fim
    if fim is None:
        raise TokenizerError("the tokenizer has no FIM tokens; use --fim-rate 0 or a CodeGemma tokenizer")
    P, M, S = fim.prefix, fim.middle, fim.suffix
    if s.mode == "psm":
        return [P, *enc(s.prefix), S, *enc(s.suffix), M, *enc(s.middle)]
    if layout == "spm-bavarian":
        return [P, S, *enc(s.suffix), M, *enc(s.prefix), *enc(s.middle)]
    return [S, *enc(s.suffix), P, *enc(s.prefix), M, *enc(s.middle)]


def render(s: Split, layout: str = "spm") -> str:
    """The same as text, for --keep-text and tests."""
    if s.mode == "none":
        return s.prefix
    if s.mode == "psm":
        return f"{FIM_PREFIX}{s.prefix}{FIM_SUFFIX}{s.suffix}{FIM_MIDDLE}{s.middle}"
    if layout == "spm-bavarian":
        return f"{FIM_PREFIX}{FIM_SUFFIX}{s.suffix}{FIM_MIDDLE}{s.prefix}{s.middle}"
    return f"{FIM_SUFFIX}{s.suffix}{FIM_PREFIX}{s.prefix}{FIM_MIDDLE}{s.middle}"
