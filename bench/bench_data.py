"""Scaling of `codegemma data build` (datatrove, every stage including global deduplication): peak RSS and MB/s
per core at 1x, 4x and 16x a corpus of real code found on this machine.

The corpus: the Python sources of installed packages whose metadata names a permissive licence (MIT, BSD,
Apache, PSF, ISC), cut into repositories of at most 2 MB (a package, or its subpackages), in a fixed
shuffled order after the largest repository and the one holding the largest file (so every scale holds
the largest items); scale k takes repositories until k x --base-mb. Each build runs in a fresh process with
`--workers 1` (one core), so its peak RSS is that process's; MB/s per core is input MB / CPU seconds of
the build (user + system, its processes together; wall time is shown too, it includes waiting for a core).
Baseline in the same run: plain tokenization of the 1x files (no filtering, dedup, packing or FIM).
Goal: RSS grows by less than 2x from 1x to 16x.

    python bench/bench_data.py [--base-mb 2] [--scales 1 4 16] [--tasks 4] [--tokenizer FOLDER]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PERMISSIVE = re.compile(r"\b(MIT|BSD|Apache|PSF|Python Software Foundation|ISC|Unlicense|Zope Public)\b", re.I)
UNIT_BYTES = 2_000_000

CHILD = """
import json, resource, sys, time
from codegemma.data.pipeline import BuildSettings, build
t = time.perf_counter()
stats = build([sys.argv[1]], sys.argv[2], sys.argv[3], BuildSettings(tasks=int(sys.argv[4]), workers=1,
              seq_len=8192))
wall = time.perf_counter() - t
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": me.ru_maxrss / 1024,
                  "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "stats": stats}))
"""


def permissive_packages(site: Path) -> list[Path]:
    """Top-level package folders of distributions whose metadata names a permissive licence."""
    found: set[Path] = set()
    for info in sorted(site.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(encoding="utf-8", errors="replace") if (info / "METADATA").exists() else ""
        licence = "\n".join(line for line in meta.splitlines()[:80]
                            if line.startswith(("License", "Classifier: License")))
        if not PERMISSIVE.search(licence):
            continue
        names = (info / "top_level.txt").read_text().split() if (info / "top_level.txt").exists() else []
        found |= {site / n for n in names if (site / n).is_dir()}
    return sorted(found)


def units(folder: Path) -> list[tuple[str, list[Path]]]:
    """A package as repositories of at most UNIT_BYTES of .py files: the folder, or its subfolders and the rest."""
    files = [f for f in folder.rglob("*.py") if f.is_file() and "__pycache__" not in f.parts]
    if sum(f.stat().st_size for f in files) <= UNIT_BYTES:
        return [(folder.name, files)] if files else []
    out = [(folder.name, [f for f in folder.glob("*.py") if f.is_file()])]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
        out += [(f"{folder.name}.{name}", fs) for name, fs in units(sub)]
    return [(n, fs) for n, fs in out if fs and sum(f.stat().st_size for f in fs) <= UNIT_BYTES]


def make_corpus(root: Path, pool: list[tuple[str, Path, list[Path]]], target: int) -> int:
    size = 0
    for name, base, files in pool:
        if size >= target:
            break
        for f in files:
            dest = root / name / f.relative_to(base)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            size += f.stat().st_size
    return size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-mb", type=float, default=2.0)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--tokenizer", default=None, help="default: a small CodeGemma-layout tokenizer trained here")
    args = p.parse_args()
    from codegemma.sources import open_tokenizer
    from codegemma.testing import train_sentencepiece

    site = Path(sysconfig.get_paths()["purelib"])
    pool = [(name, folder, fs) for folder in permissive_packages(site) for name, fs in units(folder)]
    pool.sort(key=lambda u: hashlib.sha256(u[0].encode()).hexdigest())  # a fixed mix of packages at every scale
    # the largest repository and the repository with the largest file kept (<= 1 MiB) come first, so every scale
    # holds them: what grows from 1x to 16x is then the corpus, not the largest item in it
    biggest = max(pool, key=lambda u: sum(f.stat().st_size for f in u[2]))
    largest_file = max(pool, key=lambda u: max((f.stat().st_size for f in u[2] if f.stat().st_size <= 1 << 20),
                                               default=0))
    pool = [biggest, largest_file] + [u for u in pool if u is not biggest and u is not largest_file]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok_spec = args.tokenizer or str(train_sentencepiece(tmp / "tok").parent)
        for scale in args.scales:
            corpus = tmp / f"corpus-{scale}x"
            size = make_corpus(corpus, pool, int(scale * args.base_mb * 1e6))
            if scale == args.scales[0]:
                tok = open_tokenizer(tok_spec)
                files = [f for f in corpus.rglob("*.py")]
                t = time.process_time()
                for f in files:
                    tok.encode(f.read_text(encoding="utf-8", errors="replace"), bos=False)
                base = (size / 1e6) / (time.process_time() - t)
            run = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(tmp / f"out-{scale}x"), tok_spec,
                                  str(args.tasks)], capture_output=True, text=True)
            if run.returncode:
                sys.exit(run.stderr[-3000:])
            r = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append((scale, size, r))
            shutil.rmtree(tmp / f"out-{scale}x")
    first = rows[0][2]["rss_mb"]
    print(f"{len(pool)} repositories available; {args.tasks} tasks, 1 worker; tokenizer {args.tokenizer or 'test'}\n")
    print("| scale | MB | repositories | files | kept | tokens | wall s | CPU s | MB/s per core | peak RSS MB "
          "| RSS vs 1x |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for scale, size, r in rows:
        s = r["stats"]
        print(f"| {scale}x | {size / 1e6:.1f} | {s['input']['repositories']} | {s['input']['files']} | "
              f"{s['stages']['filter']['out']} | {s['stages']['tokenize']['tokens']} | {r['wall']:.1f} | "
              f"{r['cpu']:.1f} | {size / 1e6 / r['cpu']:.3f} | {r['rss_mb']:.0f} | {r['rss_mb'] / first:.2f}x |")
    print(f"| baseline: tokenize the 1x files only | {rows[0][1] / 1e6:.1f} | | | | | | | {base:.3f} | | |")
    print(f"\ndropped at {rows[-1][0]}x: {rows[-1][2]['stats']['stages']['filter']['dropped']}")


if __name__ == "__main__":
    main()
