"""What each source spent: API calls per endpoint, retries and 429s, for one line a run.

Quota is the scarce resource (one createReport a minute on Amazon Business, 2,880
Google operations a day on Explorer access), so the end of every run says where it
went. Every HTTP call is counted by the shared `HttpClient` under its source and
operation; gRPC calls (Google Ads) are counted by their client. A source can add a
note of its own (Amazon Business: the createReport budget left).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


def endpoint_of(operation: str) -> str:
    """The endpoint an operation's name is about: "GET /x [account 1]" -> "GET /x".

    Operation names carry the item for error lines; a count per endpoint must not
    become a count per document.
    """
    if operation.startswith("download "):
        return "download"
    return operation.split(" [", 1)[0]


@dataclass
class SourceCalls:
    calls: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)  # answered 429 / quota exceeded
    notes: dict[str, Callable[[], str]] = field(default_factory=dict)


class CallLog:
    """Counts per source and endpoint. One per process: `CALLS`, reset when a sync starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, SourceCalls] = {}

    def reset(self) -> None:
        with self._lock:
            self._sources.clear()

    def _source(self, source: str) -> SourceCalls:
        return self._sources.setdefault(source, SourceCalls())

    def call(self, source: str, endpoint: str) -> None:
        """One attempt sent to `endpoint` (a retry is a call too: the quota counts it)."""
        with self._lock:
            self._source(source).calls[endpoint] += 1

    def retry(self, source: str, endpoint: str, *, throttled: bool = False) -> None:
        """A call about to be sent again; `throttled` if the answer was a 429 or quota error."""
        with self._lock:
            entry = self._source(source)
            entry.retries[endpoint] += 1
            if throttled:
                entry.throttled[endpoint] += 1

    def throttle(self, source: str, endpoint: str) -> None:
        """A 429 or quota answer that is not retried (the time budget is spent)."""
        with self._lock:
            self._source(source).throttled[endpoint] += 1

    def note(self, source: str, name: str, describe: Callable[[], str]) -> None:
        """A figure computed when the line is written (say, quota left now)."""
        with self._lock:
            self._source(source).notes[name] = describe

    def count(self, source: str, endpoint: str) -> int:
        with self._lock:
            entry = self._sources.get(source)
            return entry.calls[endpoint] if entry else 0

    def counts(self, source: str) -> dict[str, int]:
        with self._lock:
            entry = self._sources.get(source)
            return dict(entry.calls) if entry else {}

    def summary_lines(self) -> list[str]:
        """One line per source that made a call, endpoints in alphabetical order."""
        with self._lock:
            sources = sorted(self._sources.items())
        lines = []
        for source, entry in sources:
            if not entry.calls:
                continue
            endpoints = ", ".join(f"{name} {n}" for name, n in sorted(entry.calls.items()))
            line = (
                f"API calls of {source}: {endpoints}; {sum(entry.retries.values())} retried, "
                f"{sum(entry.throttled.values())} throttled (429 or quota)"
            )
            for name, describe in sorted(entry.notes.items()):
                line += f"; {name}: {describe()}"
            lines.append(line)
        return lines


CALLS = CallLog()
