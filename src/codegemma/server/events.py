"""The completion log: every Tabby completion and every view, select and dismiss event an editor reports,
one JSON object a line, and the figures `codegemma stats` prints from it."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

from ..errors import CodeGemmaError


class EventLogError(CodeGemmaError):
    """A log that cannot be read."""


class EventLog:
    """Appends records to a JSONL file (None: keeps nothing); one line per write, under a lock."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        if self.path is None:
            return
        line = json.dumps({"time": time.time(), **record}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)


def default_events_path() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "codegemma" / "events.jsonl"


def read_log(path: Path) -> list[dict]:
    """The records of a log; a line that is not a JSON object is an error naming its line number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EventLogError(f"{path}: cannot read the log ({exc})") from exc
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise EventLogError(f"{path}:{n}: not a JSON object ({exc})") from exc
        if not isinstance(record, dict) or "type" not in record:
            raise EventLogError(f"{path}:{n}: not an event (a JSON object with a `type`)")
        records.append(record)
    return records


def summarize(records: list[dict]) -> dict:
    """Acceptance (completions shown, then accepted), latency percentiles and tokens per accepted character.

    A completion counts as shown once a `view` names it and as accepted once a `select` does; the cost of
    an accepted character is the tokens generated for every completion shown, over the characters of the
    accepted ones.
    """
    completions = {r["completion_id"]: r for r in records if r["type"] == "completion" and "completion_id" in r}
    viewed = {r.get("completion_id") for r in records if r["type"] == "view"}
    selected = {r.get("completion_id") for r in records if r["type"] == "select"}
    dismissed = {r.get("completion_id") for r in records if r["type"] == "dismiss"}
    latencies = sorted(r["latency_ms"] for r in completions.values() if isinstance(r.get("latency_ms"), (int, float)))
    accepted_chars = sum(len(c["text"]) for cid in selected if cid in completions
                         for c in completions[cid].get("choices", []))
    shown_tokens = sum(completions[cid].get("completion_tokens", 0) for cid in viewed if cid in completions)

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"completions": len(completions), "viewed": len(viewed), "selected": len(selected),
            "dismissed": len(dismissed), "acceptance_rate": len(selected & viewed) / len(viewed) if viewed else None,
            "latency_ms_p50": pct(0.5), "latency_ms_p90": pct(0.9), "latency_ms_p99": pct(0.99),
            "latency_ms_mean": statistics.fmean(latencies) if latencies else None,
            "accepted_chars": accepted_chars,
            "tokens_per_accepted_char": shown_tokens / accepted_chars if accepted_chars else None}
