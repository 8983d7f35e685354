"""Prompt-lookup speculative decoding: drafts, and output identical to plain decoding."""

from __future__ import annotations

import sysconfig
from collections import Counter
from pathlib import Path

import pytest
import torch

from codegemma import load
from codegemma.api import Options
from codegemma.generate.speculate import PromptLookup


def test_the_draft_is_what_followed_the_latest_earlier_occurrence():
    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 0, 2, 3], max_draft=3)
    assert lookup.draft(10) == [7, 8, 0]  # (2, 3) last came before 7, 8, 0; the limit is 3
    assert lookup.draft(2) == [7, 8]
    lookup.append(6)
    assert lookup.draft(10) == []  # (3, 6) and (2, 3, 6) never occurred
    assert PromptLookup([5, 6], 4).draft(4) == []


def test_drafting_adapts_to_misses():
    lookup = PromptLookup([1, 2, 3, 4] * 8, max_draft=8)
    assert len(lookup.draft(8)) == 8
    lookup.verified(8, 2)
    assert len(lookup.draft(8)) == 3  # one past the kept part
    lookup.verified(3, 3)
    assert len(lookup.draft(8)) == 6  # doubled after a whole draft was kept
    for _ in range(10):
        lookup.verified(1, 0)  # drafts that never start right: drafting pauses, probing now and then
    drafts = [lookup.draft(8) for _ in range(16)]
    assert sum(bool(d) for d in drafts) == 2


def prompts() -> list[str]:
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    return [source[:1200], source[2000:3000], source[5000:5600],
            "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n",
            "for i in range(10):\n    print(i)\nfor j in range(10):\n", "The quick brown fox"]


def test_greedy_speculation_equals_plain_greedy(default_model, monkeypatch):
    """Token for token, on prompts that repeat themselves and prompts that do not; and drafts were kept."""
    model = default_model
    assert model.model.rows_independent()
    passes = Counter()
    decode_rows = model.model.decode_rows

    def counted(tokens, rows, cache):
        passes[len(tokens)] += 1
        return decode_rows(tokens, rows, cache)

    monkeypatch.setattr(model.model, "decode_rows", counted)
    for text in prompts():
        ids = model.tokenizer.encode(text, bos=True)
        plain = model.run([ids], Options(max_tokens=40, speculate=False))[0]
        fast = model.run([ids], Options(max_tokens=40, speculate=True))[0]
        assert fast.token_ids == plain.token_ids, text[:40]
        assert fast.text == plain.text and fast.finish_reason == plain.finish_reason
    assert sum(n * c for n, c in passes.items() if n > 1) > 0  # some passes verified drafts
    assert sum(passes.values()) < 40 * len(prompts())  # fewer passes than tokens


def test_speculation_is_on_by_default_only_where_exact(default_model, tiny_checkpoint):
    assert default_model.settings(Options()).speculate > 0
    assert default_model.settings(Options(speculate=False)).speculate == 0
    dense = load(tiny_checkpoint)  # float32 GEMMs: a row's bits may depend on the batch
    assert not dense.model.rows_independent() and dense.settings(Options()).speculate == 0


@pytest.mark.slow
def test_sampled_speculation_keeps_the_distribution(tiny_checkpoint, tmp_path):
    """Top-2 sampling on a tiny model read from a GGUF file: the distribution of 6-token continuations with
    speculation equals the plain one's (total variation of the per-position token counts)."""
    from codegemma.weights.convert import hf_to_gguf

    cg = load(hf_to_gguf(tiny_checkpoint, tmp_path / "tiny.gguf"))
    assert cg.model.rows_independent()
    ids = cg.tokenizer.encode("ab ab ab ab ab ab ab ab", bos=True)
    counts = {False: Counter(), True: Counter()}
    for spec in (False, True):
        torch.manual_seed(0)
        for _ in range(300):
            out = cg.run([ids], Options(max_tokens=6, temperature=1.0, top_k=2, speculate=spec))[0]
            counts[spec].update(enumerate(out.token_ids))
    keys = set(counts[False]) | set(counts[True])
    tv = sum(abs(counts[False][k] - counts[True][k]) for k in keys) / (2 * 300 * 6)
    assert tv < 0.06
