"""Repository context: index build time and retrieval latency on a large repository.

Indexes a folder (default: this Python's standard library, about 13k source files) into a fresh
index, then times `RepoIndex.related` at cursors taken from files across it (a cursor after the 40th
line of each file), and the refresh of an unchanged index (the server does it every 10 s, off the
request path).

    python bench/bench_repo.py [--repo FOLDER] [--cursors 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

from codegemma.repo import RepoIndex


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repo", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    p.add_argument("--cursors", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = RepoIndex(args.repo, Path(tmp) / "index.sqlite")
        built = index.refresh()
        again = index.refresh()
        files = sorted(p for p, in index._con.execute("SELECT path FROM files"))
        random.Random(0).shuffle(files)
        times, found = [], []
        for path in files[:args.cursors]:
            try:
                lines = (args.repo / path).read_text(encoding="utf-8").splitlines(keepends=True)
            except (OSError, UnicodeDecodeError):
                continue
            cut = min(40, len(lines))
            prefix, suffix = "".join(lines[:cut]), "".join(lines[cut:])
            t = time.perf_counter()
            context = index.related(prefix, suffix, path)
            times.append((time.perf_counter() - t) * 1000)
            found.append(len(context))
        times.sort()
    print(f"repository {args.repo}: {built['files']} files, index built in {built['seconds']:.1f} s, "
          f"unchanged refresh {again['seconds']:.2f} s\n")
    print("| cursors | retrieval p50 ms | p90 ms | p99 ms | max ms | chunks returned (mean) |")
    print("|---|---|---|---|---|---|")
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    print(f"| {len(times)} | {q(0.5):.2f} | {q(0.9):.2f} | {q(0.99):.2f} | {times[-1]:.2f} | "
          f"{statistics.fmean(found):.1f} |")


if __name__ == "__main__":
    main()
