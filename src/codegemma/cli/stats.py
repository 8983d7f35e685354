"""`codegemma stats LOG`: acceptance, latency and cost of completions from the server's event log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CliError

HELP = "acceptance rate, latency percentiles and tokens per accepted character from a server event log"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", type=Path, metavar="LOG",
                   help="the JSONL event log `codegemma serve --events-log` writes (Tabby completions and events)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..server.events import EventLogError, read_log, summarize

    if not args.log.is_file():
        raise CliError(f"{args.log}: no such file")
    try:
        figures = summarize(read_log(args.log))
    except EventLogError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(figures))
        return 0
    labels = {"completions": "completions", "viewed": "shown (view)", "selected": "accepted (select)",
              "dismissed": "dismissed", "acceptance_rate": "acceptance rate (accepted / shown)",
              "latency_ms_p50": "latency p50 ms", "latency_ms_p90": "latency p90 ms",
              "latency_ms_p99": "latency p99 ms", "latency_ms_mean": "latency mean ms",
              "accepted_chars": "accepted characters", "tokens_per_accepted_char": "tokens per accepted character"}
    width = max(map(len, labels.values()))
    for key, label in labels.items():
        value = figures[key]
        shown = "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{label:<{width}}  {shown}")
    return 0
