"""The learner's progress in SQLite: attempts and hints per (exercise, language), learners' own exercises;
export to JSONL.

Every write is one transaction on its own connection (WAL journal, synchronous FULL, a busy timeout), so two
tabs writing at once wait for each other instead of failing, and a process killed at any moment leaves every
committed row in place and no half-written one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, exercise TEXT NOT NULL, at REAL NOT NULL, code TEXT NOT NULL,
    passed INTEGER NOT NULL, n_passed INTEGER NOT NULL, n_tests INTEGER NOT NULL,
    seconds REAL NOT NULL,  -- time the learner spent on the exercise since the page opened or the last run
    language TEXT NOT NULL DEFAULT 'python'
);
CREATE INDEX IF NOT EXISTS attempts_exercise ON attempts (exercise);
CREATE TABLE IF NOT EXISTS hints (
    id INTEGER PRIMARY KEY, exercise TEXT NOT NULL, at REAL NOT NULL, code TEXT NOT NULL, hint TEXT NOT NULL,
    withheld INTEGER NOT NULL, model TEXT NOT NULL, language TEXT NOT NULL DEFAULT 'python'
);
CREATE INDEX IF NOT EXISTS hints_exercise ON hints (exercise);
CREATE TABLE IF NOT EXISTS exercises (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, title TEXT NOT NULL, statement TEXT NOT NULL, tests TEXT NOT NULL,
    starter TEXT NOT NULL, reference TEXT NOT NULL
);
"""
# Databases written before languages: their rows are Python's.
MIGRATIONS = {("attempts", "language"): "ALTER TABLE attempts ADD COLUMN language TEXT NOT NULL DEFAULT 'python'",
              ("hints", "language"): "ALTER TABLE hints ADD COLUMN language TEXT NOT NULL DEFAULT 'python'"}
MAX_SECONDS = 6 * 3600.0  # time reported for one attempt is capped (a tab left open overnight)


class Progress:
    """Progress kept in the SQLite file at `path` (created with its folder if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            for (table, column), sql in MIGRATIONS.items():
                if column not in {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(sql)
            db.execute("COMMIT")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=FULL")
        try:
            yield db
        finally:
            db.close()

    def _write(self, sql: str, values: tuple) -> int:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(sql, values).lastrowid
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(row or 0)

    def record_attempt(self, exercise: str, code: str, passed: bool, n_passed: int, n_tests: int,
                       seconds: float, language: str = "python") -> int:
        seconds = min(max(float(seconds), 0.0), MAX_SECONDS)
        return self._write("INSERT INTO attempts (exercise, at, code, passed, n_passed, n_tests, seconds, language) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (exercise, time.time(), code, int(passed), n_passed,
                                                               n_tests, seconds, language))

    def record_hint(self, exercise: str, code: str, hint: str, withheld: bool, model: str,
                    language: str = "python") -> int:
        return self._write("INSERT INTO hints (exercise, at, code, hint, withheld, model, language) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (exercise, time.time(), code, hint, int(withheld), model,
                                                            language))

    def add_exercise(self, title: str, statement: str, tests: str, starter: str, reference: str) -> int:
        return self._write("INSERT INTO exercises (at, title, statement, tests, starter, reference) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (time.time(), title, statement, tests, starter, reference))

    def exercises(self) -> list[dict]:
        with self._connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM exercises ORDER BY id")]

    def summary(self, language: str | None = None) -> dict[str, dict]:
        """Per exercise: attempts, solved, hints, seconds spent, and the languages it was solved in; in one
        language only where `language` is given."""
        where, args = ("WHERE language = ?", (language,)) if language else ("", ())
        out: dict[str, dict] = {}
        with self._connect() as db:
            db.execute("BEGIN")  # one consistent snapshot across the queries
            for r in db.execute("SELECT exercise, COUNT(*) AS attempts, MAX(passed) AS solved, "
                                "SUM(seconds) AS seconds, "
                                "GROUP_CONCAT(DISTINCT CASE WHEN passed THEN language END) AS solved_in "
                                f"FROM attempts {where} GROUP BY exercise", args):
                out[r["exercise"]] = {"attempts": r["attempts"], "solved": bool(r["solved"]), "hints": 0,
                                      "seconds": round(r["seconds"], 1),
                                      "solved_in": sorted(r["solved_in"].split(",")) if r["solved_in"] else []}
            for r in db.execute(f"SELECT exercise, COUNT(*) AS n FROM hints {where} GROUP BY exercise", args):
                out.setdefault(r["exercise"], {"attempts": 0, "solved": False, "seconds": 0.0,
                                               "solved_in": []})["hints"] = r["n"]
            db.execute("COMMIT")
        return out

    def last_code(self, exercise: str, language: str = "python") -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT code FROM attempts WHERE exercise = ? AND language = ? ORDER BY id DESC LIMIT 1",
                             (exercise, language)).fetchone()
        return row["code"] if row else None

    def export(self) -> Iterator[str]:
        """Every attempt, hint and learner's exercise as JSON lines, oldest first, each with its kind."""
        with self._connect() as db:
            db.execute("BEGIN")
            rows = [("exercise", r) for r in db.execute("SELECT * FROM exercises")]
            rows += [("attempt", r) for r in db.execute("SELECT * FROM attempts")]
            rows += [("hint", r) for r in db.execute("SELECT * FROM hints")]
            db.execute("COMMIT")
        for kind, r in sorted(rows, key=lambda kr: kr[1]["at"]):
            yield json.dumps({"kind": kind, **dict(r)}, ensure_ascii=False) + "\n"
