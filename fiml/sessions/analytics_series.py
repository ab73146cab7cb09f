"""Per-day series and distributions over the recorded sessions of a window, for charts.

:meth:`SessionAnalytics.get_session_stats` answers "how much" for a whole window with
aggregates run in the database. A chart also needs "when" and "how spread": sessions per
day by type, completed and abandoned sessions per day, the cache-hit rate per day, and
how durations and query counts are distributed. Those come from the rows the archive tier
already reads back (:meth:`~fiml.sessions.backends.base.ArchiveTier.recent_finished`:
each session's own facts, without its side rows), folded here into fixed buckets. That
costs O(recorded sessions in the window) in time and memory, so the window is bounded
(:data:`MAX_SERIES_DAYS`).

Days are UTC calendar days of a session's creation, the window's first (partial) day to
today, every day present (a day without sessions counts zero), oldest first. A session is
completed, abandoned or neither as :data:`fiml.sessions.metrics.ABANDONED` defines it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypedDict

from fiml.sessions.metrics import MetricFilters
from fiml.sessions.models import SessionType

__all__ = [
    "DURATION_BUCKETS",
    "MAX_SERIES_DAYS",
    "QUERY_BUCKETS",
    "Bucket",
    "DaySeries",
    "SessionSeries",
    "bucket_of",
    "fold_series",
]

MAX_SERIES_DAYS = 366
"""The longest window the series are computed for: their cost grows with its sessions."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """A range ``[low, high)`` of a distribution (``high`` None: no upper end)."""

    label: str
    low: float
    high: float | None

    def holds(self, value: float) -> bool:
        """Whether ``value`` falls in this range."""
        return value >= self.low and (self.high is None or value < self.high)


DURATION_BUCKETS = (
    Bucket("< 1 min", 0, 60),
    Bucket("1-5 min", 60, 300),
    Bucket("5-15 min", 300, 900),
    Bucket("15-60 min", 900, 3600),
    Bucket("1-4 h", 3600, 14_400),
    Bucket(">= 4 h", 14_400, None),
)
"""Session durations in seconds; the ranges cover every duration from zero."""

QUERY_BUCKETS = (
    Bucket("0", 0, 1),
    Bucket("1", 1, 2),
    Bucket("2-4", 2, 5),
    Bucket("5-9", 5, 10),
    Bucket("10-19", 10, 20),
    Bucket(">= 20", 20, None),
)
"""Queries per session; "0" and "1" are the abandoned counts when not closed."""


def bucket_of(buckets: tuple[Bucket, ...], value: float) -> int:
    """The index of the bucket holding ``value``; a negative value counts in the first."""
    for index, bucket in enumerate(buckets):
        if bucket.holds(value):
            return index
    return 0


class DaySeries(TypedDict):
    """One day of the window."""

    day: str
    """The UTC date, ``YYYY-MM-DD``."""
    sessions_by_type: dict[str, int]
    """Finished sessions created that day, per session type (every type, zeros included)."""
    completed: int
    abandoned: int
    queries: int
    cache_hits: int
    cache_hit_rate: float
    """``cache_hits / queries`` of the day's sessions, 0.0 on a day without queries."""


class SessionSeries(TypedDict):
    """What :meth:`~fiml.sessions.analytics.SessionAnalytics.get_session_series` returns:
    the window's days and distributions."""

    period_days: int
    user_id: str | None
    session_type: str | None
    days: list[DaySeries]
    duration_distribution: dict[str, int]
    """Finished sessions per duration range (:data:`DURATION_BUCKETS`), in range order."""
    queries_distribution: dict[str, int]
    """Finished sessions per query-count range (:data:`QUERY_BUCKETS`), in range order."""
    skipped_records: int
    """Recorded sessions left out because their records could not be read (logged)."""


def _day_list(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _empty_day(day: str) -> DaySeries:
    return {
        "day": day,
        "sessions_by_type": {kind.value: 0 for kind in SessionType},
        "completed": 0,
        "abandoned": 0,
        "queries": 0,
        "cache_hits": 0,
        "cache_hit_rate": 0.0,
    }


def fold_series(
    rows: list[dict[str, Any]],
    filters: MetricFilters,
    *,
    since: datetime,
    now: datetime,
    skipped: int = 0,
) -> SessionSeries:
    """The series of ``rows`` (recorded sessions as the archive's ``recent_finished``
    reads them, created from ``since`` to ``now``) for the window ``filters`` describes."""
    by_day = {day: _empty_day(day) for day in _day_list(since.date(), now.date())}
    durations = [0] * len(DURATION_BUCKETS)
    queries = [0] * len(QUERY_BUCKETS)
    for row in rows:
        created = datetime.fromisoformat(row["created_at"])
        day = by_day.get(created.date().isoformat())
        if day is None:  # outside the window's days: not one of the window's sessions
            continue
        kinds = day["sessions_by_type"]
        kinds[row["session_type"]] = kinds.get(row["session_type"], 0) + 1
        day["completed"] += int(row["completed"])
        day["abandoned"] += int(row["abandoned"])
        day["queries"] += row["total_queries"]
        day["cache_hits"] += row["cache_hits"]
        durations[bucket_of(DURATION_BUCKETS, row["duration_seconds"])] += 1
        queries[bucket_of(QUERY_BUCKETS, row["total_queries"])] += 1
    for day in by_day.values():
        day["cache_hit_rate"] = day["cache_hits"] / day["queries"] if day["queries"] else 0.0
    return {
        "period_days": int(filters.days),
        "user_id": filters.user_id,
        "session_type": filters.session_type,
        "days": list(by_day.values()),
        "duration_distribution": {
            b.label: n for b, n in zip(DURATION_BUCKETS, durations, strict=True)
        },
        "queries_distribution": {b.label: n for b, n in zip(QUERY_BUCKETS, queries, strict=True)},
        "skipped_records": skipped,
    }
