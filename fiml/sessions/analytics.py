"""SessionAnalytics: usage statistics computed by the database from recorded session facts.

Facts about a finished session (see :mod:`fiml.sessions.metrics`) are recorded when the
cleanup job archives it, or by :meth:`SessionAnalytics.record_session_metrics`. Every
statistic is an aggregate (``COUNT``/``SUM``/``AVG``/``GROUP BY``) over those facts, run in
the database (:mod:`fiml.sessions.metrics_stats`): nothing is computed by loading sessions
into Python. Analytics reaches the facts only through the store's archive tier
(:class:`~fiml.sessions.backends.base.ArchiveTier`), and takes "now" from the store's clock.

The window of a statistic is the sessions *created* in the last ``days`` days. Averages,
rates, rankings and distributions describe the finished (recorded) sessions of the window;
``active_sessions`` counts the sessions still running in the active tier, and
``total_sessions`` is the two together. A session that has ended but is not archived yet
is in neither until the next cleanup records it. A session is abandoned as
:data:`fiml.sessions.metrics.ABANDONED` defines it.

Every argument is checked before anything is read or written; a bad one is an
InvalidInputError naming it. A stored record that cannot be read is skipped and logged
(:mod:`fiml.sessions.row_decoding`) and every other session is used as usual.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

from fiml.core.errors import InvalidInputError
from fiml.sessions.analytics_export import (
    EXPORT_FORMATS,
    render_export,
    resolve_export_path,
    write_export,
)
from fiml.sessions.analytics_series import MAX_SERIES_DAYS, SessionSeries, fold_series
from fiml.sessions.backends.base import ArchiveTier
from fiml.sessions.metrics import MetricFilters, SessionFacts
from fiml.sessions.metrics_backfill import BackfillReport
from fiml.sessions.metrics_stats import FinishedStats
from fiml.sessions.models import Session, SessionType
from fiml.sessions.store import SessionStore, parse_session_type

__all__ = [
    "AssetCount",
    "BackfillReport",
    "RecentSession",
    "SessionAnalytics",
    "SessionSeries",
    "SessionStats",
    "TagCount",
    "UserSessionSummary",
]

MAX_DAYS = 36_500
MAX_TOP = 100
MAX_BATCH = 10_000
RECENT_SESSIONS = 10
SERIES_ROWS = 10_000_000
"""More recorded sessions than a window of the series holds (they read every one of them)."""


class AssetCount(TypedDict):
    """An asset and how many finished sessions analysed it."""

    asset: str
    count: int


class TagCount(TypedDict):
    """A tag and how many finished sessions carried it."""

    tag: str
    count: int


class SessionStats(TypedDict):
    """What :meth:`SessionAnalytics.get_session_stats` returns: the figures, and the filter
    they were computed for (``period_days``, ``user_id``, ``session_type``; None is all)."""

    period_days: float
    user_id: str | None
    session_type: str | None
    total_sessions: int
    active_sessions: int
    archived_sessions: int
    total_queries: int
    avg_duration_seconds: float
    avg_queries_per_session: float
    abandonment_rate: float
    top_assets: list[AssetCount]
    query_type_distribution: dict[str, int]
    session_type_breakdown: dict[str, int]
    popular_tags: list[TagCount]
    cache_hit_rate: float
    message: NotRequired[str]


class RecentSession(TypedDict):
    """One finished session in a user's summary."""

    session_id: str
    session_type: str
    created_at: str
    ended_at: str
    duration_seconds: float
    total_queries: int
    completed: bool
    abandoned: bool


class UserSessionSummary(TypedDict):
    """What :meth:`SessionAnalytics.get_user_session_summary` returns; ``skipped_records``
    counts the recent sessions left out because their records could not be read."""

    user_id: str
    days: float
    stats: SessionStats
    recent_sessions: list[RecentSession]
    skipped_records: int


def _checked_days(days: Any) -> float:
    # Compared before any conversion: NaN fails every comparison, and an int too large
    # for a float is still compared exactly.
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_DAYS:
        raise InvalidInputError(
            "days", days, f"must be a number of days above 0, at most {MAX_DAYS}"
        )
    return float(days)


def _storable_text(value: str) -> bool:
    """Text both databases can hold: no NUL (PostgreSQL refuses it), valid UTF-8."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _checked_user(user_id: Any, *, required: bool = False) -> str | None:
    if user_id is None and not required:
        return None
    if not isinstance(user_id, str) or not 0 < len(user_id) <= 255 or not _storable_text(user_id):
        raise InvalidInputError(
            "user_id", user_id, "must be a string of 1-255 characters, without NUL"
        )
    return user_id


def _checked_kind(session_type: Any) -> str | None:
    return None if session_type is None else parse_session_type(session_type).value


def _checked_top(top: Any) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        raise InvalidInputError("top", top, f"must be an integer from 1 to {MAX_TOP}")
    return top


def _checked_batch(batch_size: Any) -> int:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH
    ):
        raise InvalidInputError(
            "batch_size", batch_size, f"must be an integer from 1 to {MAX_BATCH}"
        )
    return batch_size


def _checked_since(archived_since: Any) -> datetime | None:
    if archived_since is None:
        return None
    if not isinstance(archived_since, datetime) or archived_since.utcoffset() is None:
        raise InvalidInputError(
            "archived_since", archived_since, "must be a timezone-aware datetime or None"
        )
    return archived_since


def _filters(user_id: Any, session_type: Any, days: Any) -> MetricFilters:
    return MetricFilters(
        user_id=_checked_user(user_id),
        session_type=_checked_kind(session_type),
        days=_checked_days(days),
    )


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


class SessionAnalytics:
    """Record finished sessions and report usage statistics over them.

    Built on an initialized :class:`~fiml.sessions.store.SessionStore`: facts live in its
    archive database, running sessions are counted in its active tier.
    """

    def __init__(self, store: SessionStore) -> None:
        if not isinstance(store, SessionStore):
            raise InvalidInputError("store", store, "must be a SessionStore")
        self.store = store

    @property
    def archive(self) -> ArchiveTier:
        """The archive tier, where the facts are recorded and aggregated."""
        return self.store.archive

    async def record_session_metrics(self, session: Session) -> None:
        """Record (or re-record) a closed, expired or archived session; it counts once.

        A session still running is an InvalidInputError, and nothing is written.
        """
        if not isinstance(session, Session):
            raise InvalidInputError("session", session, "must be a Session")
        now = self.store.now()
        facts = SessionFacts.from_session(session, now=now)
        await self.archive.record_metrics([facts], recorded_at=now)

    async def record_archived_metrics(
        self, *, archived_since: datetime | None = None, batch_size: int = 1000
    ) -> BackfillReport:
        """Record every archived session that has no facts yet.

        With ``archived_since`` (timezone-aware), only sessions archived at or after it.
        Idempotent, and safe to run concurrently: each session is counted by exactly one
        run. The report says how many this run recorded (``recorded``) and which archived
        records could not be read (``skipped``, each also logged with its session id);
        those stay unrecorded, and the others are recorded all the same.
        """
        since = _checked_since(archived_since)
        batch = _checked_batch(batch_size)
        return await self.archive.record_unrecorded_archived(
            now=self.store.now(), archived_since=since, batch_size=batch
        )

    async def get_session_stats(
        self,
        user_id: str | None = None,
        session_type: SessionType | str | None = None,
        days: float = 30,
        *,
        top: int = 10,
    ) -> SessionStats:
        """Statistics over the sessions created in the last ``days`` days.

        Filter by ``user_id`` and ``session_type``; ``top`` bounds the rankings
        (``top_assets``, ``popular_tags``, most used first, ties by name). The result
        echoes the filter (``period_days``, ``user_id``, ``session_type``). When the window
        holds no finished session the result carries a ``message`` saying so.
        """
        filters = _filters(user_id, session_type, days)
        top = _checked_top(top)
        now = self.store.now()
        since = now - timedelta(days=filters.days)
        active = await self.store.backend.count_active(
            now=now,
            user_id=filters.user_id,
            session_type=filters.session_type,
            created_since=since,
        )
        finished = await self.archive.finished_stats(filters, since, top=top)
        return _stats(filters, finished, active=active)

    async def get_session_series(
        self,
        user_id: str | None = None,
        session_type: SessionType | str | None = None,
        days: int = 30,
    ) -> SessionSeries:
        """Per-day series and distributions over the window :meth:`get_session_stats`
        describes for the same filter (see :mod:`fiml.sessions.analytics_series`), so they
        add up to its figures. ``days`` is a whole number from 1 to ``MAX_SERIES_DAYS``:
        the series read every recorded session of the window, O(its sessions).
        """
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_SERIES_DAYS:
            raise InvalidInputError(
                "days", days, f"must be a whole number of days from 1 to {MAX_SERIES_DAYS}"
            )
        filters = _filters(user_id, session_type, days)
        now = self.store.now()
        since = now - timedelta(days=filters.days)
        # The rows without their assets, tags and query types (which an export reads too,
        # at twice the cost): the series need only each session's own facts.
        recorded = await self.archive.recent_finished(filters, since, limit=SERIES_ROWS)
        return fold_series(
            recorded.rows, filters, since=since, now=now, skipped=len(recorded.skipped)
        )

    async def get_user_session_summary(self, user_id: str, days: float = 30) -> UserSessionSummary:
        """One user's statistics and their ten most recent finished sessions.

        A recent session whose record cannot be read is left out (and logged); the next
        older one takes its place, and ``skipped_records`` counts those left out.
        """
        checked = cast(str, _checked_user(user_id, required=True))
        filters = _filters(checked, None, days)
        stats = await self.get_session_stats(user_id=checked, days=filters.days)
        since = self.store.now() - timedelta(days=filters.days)
        recent = await self.archive.recent_finished(filters, since, limit=RECENT_SESSIONS)
        return {
            "user_id": checked,
            "days": filters.days,
            "stats": stats,
            "recent_sessions": [cast(RecentSession, _recent(row)) for row in recent.rows],
            "skipped_records": len(recent.skipped),
        }

    async def export_session_metrics(
        self,
        format: Literal["json", "csv"] | str = "json",
        *,
        user_id: str | None = None,
        session_type: SessionType | str | None = None,
        days: float = 30,
        path: str | Path | None = None,
        directory: str | Path | None = None,
    ) -> str:
        """The recorded sessions of the window, as JSON (with the stats) or CSV.

        Returns the document; with ``path`` it is also written there. ``path`` is taken
        relative to ``directory`` (default: the working directory) and may not lead out
        of it. Any format but ``json`` or ``csv`` is an InvalidInputError. Records that
        cannot be read are left out and logged; the JSON document lists them (``skipped``).
        """
        if not isinstance(format, str) or format not in EXPORT_FORMATS:
            raise InvalidInputError("format", format, "must be 'json' or 'csv'")
        filters = _filters(user_id, session_type, days)
        if path is None and directory is not None:
            raise InvalidInputError("directory", directory, "is only used with a path")
        target = (
            None if path is None else await asyncio.to_thread(resolve_export_path, path, directory)
        )
        stats = await self.get_session_stats(filters.user_id, filters.session_type, filters.days)
        now = self.store.now()
        exported = await self.archive.export_rows(filters, now - timedelta(days=filters.days))
        document = render_export(
            format, filters, stats, exported.rows, exported.skipped, generated_at=now
        )
        if target is not None:
            await write_export(target, document)
        return document


def _recent(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in RecentSession.__annotations__}


def _stats(filters: MetricFilters, finished: FinishedStats, *, active: int) -> SessionStats:
    """The figures of a window: the finished sessions' aggregates and the running count."""
    done, queries = finished.sessions, finished.queries
    stats: SessionStats = {
        "period_days": filters.days,
        "user_id": filters.user_id,
        "session_type": filters.session_type,
        "total_sessions": done + active,
        "active_sessions": active,
        "archived_sessions": done,
        "total_queries": queries,
        "avg_duration_seconds": finished.avg_duration_seconds,
        "avg_queries_per_session": _ratio(queries, done),
        "abandonment_rate": _ratio(finished.abandoned, done),
        "top_assets": [{"asset": a, "count": n} for a, n in finished.top_assets],
        "query_type_distribution": finished.query_types,
        "session_type_breakdown": finished.session_types,
        "popular_tags": [{"tag": t, "count": n} for t, n in finished.popular_tags],
        "cache_hit_rate": _ratio(finished.cache_hits, queries),
    }
    if done == 0:
        stats["message"] = (
            f"No sessions in the last {filters.days:g} days."
            if active == 0
            else f"No finished sessions in the last {filters.days:g} days yet; "
            "averages and rankings cover finished sessions."
        )
    return stats
