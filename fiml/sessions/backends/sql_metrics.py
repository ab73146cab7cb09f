"""The analytics half of the SQL archive tier: recording facts and reading them back.

:class:`SqlMetrics` is mixed into :class:`~fiml.sessions.backends.sql.SqlBackend`, whose
connections it uses: writes in its write transactions (on SQLite, behind its write lock),
reads on its read-only connections, database faults raised as storage errors naming the
dialect. The SQL itself lives with the facts (:mod:`fiml.sessions.metrics` and its
``metrics_*`` siblings); this class only runs it, so analytics never touches an engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection

from fiml.sessions.metrics import MetricFilters, SessionFacts, replace_metrics
from fiml.sessions.metrics_backfill import BackfillReport, record_unrecorded_archived
from fiml.sessions.metrics_rows import RecordedRows, read_export_rows, read_recent_rows
from fiml.sessions.metrics_stats import FinishedStats, finished_stats

__all__ = ["SqlMetrics"]

T = TypeVar("T")


class SqlMetrics:
    """The :class:`~fiml.sessions.backends.base.ArchiveTier` methods analytics calls."""

    if TYPE_CHECKING:  # provided by the SQL backend this class is mixed into

        def _reading(
            self, work: Callable[[Connection], T], *, snapshot: bool = False
        ) -> Awaitable[T]: ...

        def _writing(self, work: Callable[[Connection], T]) -> Awaitable[T]: ...

    async def record_metrics(self, facts: Sequence[SessionFacts], *, recorded_at: datetime) -> None:
        """Record ``facts``, replacing whatever was recorded for the same sessions before."""
        await self._writing(lambda conn: replace_metrics(conn, facts, recorded_at=recorded_at))

    async def record_unrecorded_archived(
        self, *, now: datetime, archived_since: datetime | None, batch_size: int
    ) -> BackfillReport:
        """Record the archived sessions that have no facts yet (see ``metrics_backfill``)."""
        return await record_unrecorded_archived(
            self._reading,
            self._writing,
            now=now,
            archived_since=archived_since,
            batch_size=batch_size,
        )

    async def finished_stats(
        self, filters: MetricFilters, since: datetime, *, top: int
    ) -> FinishedStats:
        """The aggregates of a window, on one snapshot."""
        return await self._reading(
            lambda conn: finished_stats(_snapshot(conn), filters, since, top=top), snapshot=True
        )

    async def recent_finished(
        self, filters: MetricFilters, since: datetime, *, limit: int
    ) -> RecordedRows:
        """The window's most recently created recorded sessions, newest first."""
        return await self._reading(
            lambda conn: read_recent_rows(_snapshot(conn), filters, since, limit=limit),
            snapshot=True,
        )

    async def export_rows(self, filters: MetricFilters, since: datetime) -> RecordedRows:
        """Every recorded session of the window, oldest first, on one snapshot."""
        return await self._reading(
            lambda conn: read_export_rows(_snapshot(conn), filters, since), snapshot=True
        )


def _snapshot(conn: Connection) -> Connection:
    """``conn``, its statements all seeing one snapshot, so that the figures of one call
    agree with each other (SQLite's read transaction already does; PostgreSQL's default,
    READ COMMITTED, takes a snapshot per statement)."""
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
    return conn
