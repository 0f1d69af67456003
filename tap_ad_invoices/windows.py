"""Date windows: tile a date range, keeping windows already requested by an earlier run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, order=True)
class Window:
    start: dt.date
    end: dt.date  # inclusive

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


def plan_windows(
    start: dt.date, end: dt.date, days: int, keep: Iterable[Window] = ()
) -> list[Window]:
    """Windows of at most `days` days covering start..end, in order.

    Windows in `keep` (requests still running from an earlier run) are reused
    as they are, even when they reach past `end`, and the new windows fill the
    gaps around them; kept windows that end before `start` are dropped.
    """
    if days < 1:
        raise ValueError("a window needs at least one day")
    kept = sorted(w for w in keep if w.end >= start)
    windows: list[Window] = []
    cursor = start
    while cursor <= end or kept:
        if kept and kept[0].start <= cursor:
            window = kept.pop(0)
            windows.append(window)
            cursor = max(cursor, window.end + ONE_DAY)
            continue
        if cursor > end:  # only kept windows are left, beyond the range
            window = kept.pop(0)
            windows.append(window)
            cursor = window.end + ONE_DAY
            continue
        limit = end if not kept else min(end, kept[0].start - ONE_DAY)
        window_end = min(cursor + dt.timedelta(days=days - 1), limit)
        windows.append(Window(cursor, window_end))
        cursor = window_end + ONE_DAY
    return windows


def contiguous_end(windows: list[Window], done: set[Window]) -> dt.date | None:
    """End of the longest run of finished windows from the first one (None if the first isn't)."""
    last = None
    for window in windows:
        if window not in done:
            break
        last = window.end
    return last


def add_months(month: dt.date, count: int) -> dt.date:
    """The first day of the month `count` months from `month`'s (negative: earlier)."""
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)
