"""End-to-end MB/s and per-stage time of `codegemma data build` on a real corpus found on this machine.

The corpus: the Python standard library as one repository and a dozen installed packages as others.
Baseline in the same run: plain tokenization of the same files (no filtering, packing or FIM).

    python bench/bench_data.py [--tokenizer FOLDER|FILE.gguf] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tokenizer", default=None, help="default: a small CodeGemma-layout tokenizer trained here")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    from codegemma.data.pipeline import BuildSettings, build
    from codegemma.sources import open_tokenizer
    from codegemma.testing import machine_corpus, train_sentencepiece

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = machine_corpus(tmp / "corpus")
        tok_spec = args.tokenizer or str(train_sentencepiece(tmp / "tok").parent)
        tok = open_tokenizer(tok_spec)
        files = [f for f in (tmp / "corpus").rglob("*.py") if f.is_file()]
        t = time.perf_counter()
        tokens = sum(len(tok.encode(f.read_text(encoding="utf-8", errors="replace"), bos=False)) for f in files)
        base_s = time.perf_counter() - t
        base_mb = sum(f.stat().st_size for f in files) / 1e6
        t = time.perf_counter()
        stats = build([tmp / "corpus"], tmp / "out", tok_spec, BuildSettings(workers=args.workers, seq_len=8192))
        total = time.perf_counter() - t
    mb = size / 1e6
    s = stats["seconds"]
    print(f"corpus: {stats['input']['repositories']} repositories, {stats['input']['files']} files, {mb:.1f} MB; "
          f"kept {stats['stages']['filter']['out']} files, {stats['stages']['tokenize']['tokens']} tokens; "
          f"{args.workers} workers\n")
    print("| run | MB/s | read s | plan s (filter, dedup, decontaminate) | shards s (pack, FIM, tokenize) | total s |")
    print("|---|---|---|---|---|---|")
    print(f"| data build | {mb / total:.2f} | {s['read']:.1f} | {s['plan']:.1f} | {s['shards']:.1f} | {total:.1f} |")
    print(f"| baseline: tokenize the .py files only ({tokens} tokens) | {base_mb / base_s:.2f} | | | | {base_s:.1f} |")
    print(f"\ndropped: {stats['stages']['filter']['dropped']}")


if __name__ == "__main__":
    main()
