"""Counting keys in flat memory: how many times has this key been seen so far?

A statement can hold a million rows, and the n-th repeat of an invoice number in it
gets the key `N#n` (README). Counting needs every key seen so far; kept in a dict, a
million keys cost ~100 MB. Up to `in_memory_limit` keys live in a dict (almost every
real statement); past that they move to a private temporary SQLite file, which is
deleted when closed, so memory stays flat whatever the statement's length.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType


class OccurrenceCounter:
    def __init__(self, in_memory_limit: int = 50_000) -> None:
        self.in_memory_limit = in_memory_limit
        self._counts: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None

    def add(self, key: str) -> int:
        """Count one more `key`; return how many times it has been seen, this one included."""
        if self._db is not None:
            row = self._db.execute(
                "INSERT INTO seen (key, n) VALUES (?, 1) "
                "ON CONFLICT (key) DO UPDATE SET n = n + 1 RETURNING n",
                (key,),
            ).fetchone()
            return int(row[0])
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if len(self._counts) > self.in_memory_limit:
            self._spill()
        return count

    @property
    def on_disk(self) -> bool:
        return self._db is not None

    def _spill(self) -> None:
        # "" is SQLite's private temporary file: on disk, never shared, gone on close.
        db = sqlite3.connect("", isolation_level=None)
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
        db.execute("BEGIN")  # one transaction for the statement: no commit per row
        db.executemany("INSERT INTO seen VALUES (?, ?)", self._counts.items())
        self._db, self._counts = db, {}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._counts = {}

    def __enter__(self) -> OccurrenceCounter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
