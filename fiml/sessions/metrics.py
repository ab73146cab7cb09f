"""Analytics facts about finished sessions, and writing them into the metric tables.

A session's facts (:class:`SessionFacts`) are one ``session_metrics`` row plus its assets,
tags and per-type query counts as rows of the side tables. Two ways to write them, each
within the caller's transaction:

- :func:`replace_metrics` is an upsert: recording a session again replaces its facts, so
  it is still counted once.
- :func:`insert_missing_facts` inserts only sessions that have no facts yet and returns how
  many it inserted, so concurrent jobs recording the same sessions count each one once
  between them.

Both lock sessions in id order, so concurrent writers of overlapping sets never deadlock.
:data:`ABANDONED` is the one definition of an abandoned session. Reading the facts back is
:mod:`~fiml.sessions.metrics_stats` (aggregates) and :mod:`~fiml.sessions.metrics_rows`
(rows); recording archived sessions that have none is :mod:`~fiml.sessions.metrics_backfill`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, Table, and_, delete, insert

from fiml.core.errors import InvalidInputError
from fiml.sessions.db import (
    SessionMetricAsset,
    SessionMetricQueryType,
    SessionMetrics,
    SessionMetricTag,
)
from fiml.sessions.models import Session
from fiml.sessions.sql_dialects import dialect_insert

__all__ = [
    "ABANDONED",
    "ABANDONED_BELOW_QUERIES",
    "FACT_SOURCES",
    "MetricFilters",
    "SessionFacts",
    "insert_missing_facts",
    "replace_metrics",
]

M = cast(Table, SessionMetrics.__table__)
MA = cast(Table, SessionMetricAsset.__table__)
MT = cast(Table, SessionMetricTag.__table__)
MQ = cast(Table, SessionMetricQueryType.__table__)
_BATCH = 500
FACT_SOURCES = (
    "id",
    "user_id",
    "session_type",
    "created_at",
    "expires_at",
    "last_accessed_at",
    "closed_at",
    "archived_at",
    "total_queries",
    "cache_hits",
    "assets",
    "tags",
    "query_type_counts",
)
"""The stored session fields a session's facts are computed from (the archive reads only
these when it records facts)."""
_FACT_COLUMNS = (
    "user_id",
    "session_type",
    "created_at",
    "ended_at",
    "duration_seconds",
    "total_queries",
    "cache_hits",
    "completed",
    "recorded_at",
)


ABANDONED_BELOW_QUERIES = 2
ABANDONED: ColumnElement[bool] = and_(
    M.c.completed.is_(False), M.c.total_queries < ABANDONED_BELOW_QUERIES
)
"""The one definition of an abandoned session: it expired without being closed, after
fewer than two queries. A closed session is completed; one that expired after real work
(two queries or more) is neither."""


@dataclass(frozen=True, slots=True)
class MetricFilters:
    """Which recorded sessions a statistic or an export covers (already validated)."""

    user_id: str | None
    session_type: str | None
    days: float

    def conditions(self, since: datetime) -> list[ColumnElement[bool]]:
        """WHERE conditions on ``session_metrics``: created at or after ``since``, filtered."""
        conditions = [M.c.created_at >= since]
        if self.user_id is not None:
            conditions.append(M.c.user_id == self.user_id)
        if self.session_type is not None:
            conditions.append(M.c.session_type == self.session_type)
        return conditions


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What analytics keeps about one finished session."""

    session_id: UUID
    user_id: str | None
    session_type: str
    created_at: datetime
    ended_at: datetime
    total_queries: int
    cache_hits: int
    completed: bool
    assets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    query_type_counts: dict[str, int] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float:
        """From creation to the end; never negative."""
        return max((self.ended_at - self.created_at).total_seconds(), 0.0)

    @property
    def abandoned(self) -> bool:
        """:data:`ABANDONED`, for one session in hand (the Prometheus counters use it)."""
        return not self.completed and self.total_queries < ABANDONED_BELOW_QUERIES

    @classmethod
    def build(
        cls,
        *,
        session_id: UUID,
        user_id: str | None,
        session_type: str,
        created_at: datetime,
        expires_at: datetime,
        last_accessed_at: datetime,
        closed_at: datetime | None,
        archived_at: datetime | None,
        total_queries: int,
        cache_hits: int,
        assets: Iterable[str],
        tags: Iterable[str],
        query_type_counts: dict[str, int],
        now: datetime,
    ) -> SessionFacts:
        """Facts from a session's fields; a session still running is an InvalidInputError."""
        if closed_at is None and archived_at is None and expires_at > now:
            raise InvalidInputError(
                "session", str(session_id), "is still active; only finished sessions are recorded"
            )
        return cls(
            session_id=session_id,
            user_id=user_id,
            session_type=session_type,
            created_at=created_at,
            ended_at=closed_at if closed_at is not None else last_accessed_at,
            total_queries=total_queries,
            cache_hits=cache_hits,
            completed=closed_at is not None,
            assets=tuple(dict.fromkeys(assets)),
            tags=tuple(dict.fromkeys(tags)),
            query_type_counts={k: int(v) for k, v in query_type_counts.items() if int(v) > 0},
        )

    @classmethod
    def from_session(cls, session: Session, *, now: datetime) -> SessionFacts:
        """Facts about a closed, expired or archived session."""
        history = session.state.history
        return cls.build(
            session_id=session.id,
            user_id=session.user_id,
            session_type=session.type.value,
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_accessed_at=session.last_accessed_at,
            closed_at=session.closed_at,
            archived_at=session.archived_at,
            total_queries=history.total_queries,
            cache_hits=history.cache_hits,
            assets=session.assets,
            tags=session.tags,
            query_type_counts=history.query_type_counts,
            now=now,
        )

    def row(self, recorded_at: datetime) -> dict[str, Any]:
        """The ``session_metrics`` row."""
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "session_type": self.session_type,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "duration_seconds": self.duration_seconds,
            "total_queries": self.total_queries,
            "cache_hits": self.cache_hits,
            "completed": self.completed,
            "recorded_at": recorded_at,
        }


def _chunks(items: Sequence[SessionFacts]) -> Iterable[Sequence[SessionFacts]]:
    ordered = sorted(items, key=lambda f: f.session_id)
    for start in range(0, len(ordered), _BATCH):
        yield ordered[start : start + _BATCH]


def _insert_side_rows(conn: Connection, facts: Iterable[SessionFacts]) -> None:
    assets: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    types: list[dict[str, Any]] = []
    for fact in facts:
        sid = fact.session_id
        assets.extend({"session_id": sid, "asset": a} for a in fact.assets)
        tags.extend({"session_id": sid, "tag": t} for t in fact.tags)
        types.extend(
            {"session_id": sid, "query_type": k, "queries": v}
            for k, v in fact.query_type_counts.items()
        )
    for table, rows in ((MA, assets), (MT, tags), (MQ, types)):
        if rows:
            conn.execute(insert(table), rows)


def replace_metrics(
    conn: Connection, facts: Sequence[SessionFacts], *, recorded_at: datetime
) -> None:
    """Within ``conn``'s transaction, record ``facts``, replacing whatever was recorded for
    the same sessions before."""
    for batch in _chunks(facts):
        stmt = dialect_insert(conn.dialect.name, M)
        stmt = stmt.on_conflict_do_update(
            index_elements=[M.c.session_id],
            set_={name: stmt.excluded[name] for name in _FACT_COLUMNS},
        )
        conn.execute(stmt, [f.row(recorded_at) for f in batch])
        ids = [f.session_id for f in batch]
        for table in (MA, MT, MQ):
            conn.execute(delete(table).where(table.c.session_id.in_(ids)))
        _insert_side_rows(conn, batch)


def insert_missing_facts(
    conn: Connection, facts: Sequence[SessionFacts], *, recorded_at: datetime
) -> int:
    """Within ``conn``'s transaction, record the sessions among ``facts`` that have no facts
    yet; returns how many. Archival calls it in the transaction that archives the sessions,
    so a session is recorded exactly when it is archived."""
    inserted = 0
    for batch in _chunks(facts):
        stmt = (
            dialect_insert(conn.dialect.name, M).on_conflict_do_nothing().returning(M.c.session_id)
        )
        new_ids = set(conn.execute(stmt, [f.row(recorded_at) for f in batch]).scalars())
        _insert_side_rows(conn, [f for f in batch if f.session_id in new_ids])
        inserted += len(new_ids)
    return inserted
