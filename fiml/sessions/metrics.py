"""Recording analytics facts about finished sessions into the metric tables.

A session's facts are one ``session_metrics`` row plus its assets, tags and per-type query
counts as rows of the side tables. Two ways to write them:

- :func:`replace_metrics` is an upsert: recording a session again replaces its facts, so
  it is still counted once.
- :func:`add_missing_metrics` inserts only sessions that have no facts yet and returns how
  many it inserted, so concurrent jobs recording the same sessions count each one once
  between them.

Both lock sessions in id order, so concurrent writers of overlapping sets never deadlock.
:func:`record_unrecorded_archived` records the archived sessions that have no facts yet,
reading each archived record on its own so a damaged one is skipped and reported while the
others are recorded. :data:`ABANDONED` is the one definition of an abandoned session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Table, and_, delete, exists, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fiml.core.errors import InvalidInputError
from fiml.sessions.db import (
    READ_ONLY_OPTION,
    SessionMetricAsset,
    SessionMetricQueryType,
    SessionMetrics,
    SessionMetricTag,
    SessionRecord,
)
from fiml.sessions.limits import MAX_LABEL_CHARS
from fiml.sessions.models import Session, SessionType
from fiml.sessions.row_decoding import (
    RowReader,
    SkippedRecord,
    as_stored,
    report_skipped,
    shown_id,
)

__all__ = [
    "ABANDONED",
    "ABANDONED_BELOW_QUERIES",
    "BackfillReport",
    "MetricFilters",
    "SessionFacts",
    "add_missing_metrics",
    "backfill_archived_metrics",
    "insert_missing_facts",
    "record_unrecorded_archived",
    "replace_metrics",
]

M = cast(Table, SessionMetrics.__table__)
MA = cast(Table, SessionMetricAsset.__table__)
MT = cast(Table, SessionMetricTag.__table__)
MQ = cast(Table, SessionMetricQueryType.__table__)
S = cast(Table, SessionRecord.__table__)
_BATCH = 500
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


def _dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _chunks(items: Sequence[SessionFacts]) -> Iterable[Sequence[SessionFacts]]:
    ordered = sorted(items, key=lambda f: f.session_id)
    for start in range(0, len(ordered), _BATCH):
        yield ordered[start : start + _BATCH]


async def _insert_side_rows(conn: AsyncConnection, facts: Iterable[SessionFacts]) -> None:
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
            await conn.execute(insert(table), rows)


async def replace_metrics(
    engine: AsyncEngine, facts: Sequence[SessionFacts], *, recorded_at: datetime
) -> None:
    """Record ``facts``, replacing whatever was recorded for the same sessions before."""
    async with engine.begin() as conn:
        for batch in _chunks(facts):
            stmt = _dialect_insert(conn, M)
            stmt = stmt.on_conflict_do_update(
                index_elements=[M.c.session_id],
                set_={name: stmt.excluded[name] for name in _FACT_COLUMNS},
            )
            await conn.execute(stmt, [f.row(recorded_at) for f in batch])
            ids = [f.session_id for f in batch]
            for table in (MA, MT, MQ):
                await conn.execute(delete(table).where(table.c.session_id.in_(ids)))
            await _insert_side_rows(conn, batch)


async def insert_missing_facts(
    conn: AsyncConnection, facts: Sequence[SessionFacts], *, recorded_at: datetime
) -> int:
    """Within ``conn``'s transaction, record the sessions among ``facts`` that have no facts
    yet; returns how many. Archival calls it in the transaction that archives the sessions,
    so a session is recorded exactly when it is archived."""
    inserted = 0
    for batch in _chunks(facts):
        stmt = _dialect_insert(conn, M).on_conflict_do_nothing().returning(M.c.session_id)
        new_ids = set((await conn.execute(stmt, [f.row(recorded_at) for f in batch])).scalars())
        await _insert_side_rows(conn, [f for f in batch if f.session_id in new_ids])
        inserted += len(new_ids)
    return inserted


async def add_missing_metrics(
    engine: AsyncEngine, facts: Sequence[SessionFacts], *, recorded_at: datetime
) -> int:
    """Record the sessions among ``facts`` that have no facts yet; returns how many."""
    async with engine.begin() as conn:
        return await insert_missing_facts(conn, facts, recorded_at=recorded_at)


_ARCHIVED_COLUMNS: dict[str, ColumnElement[Any]] = {
    name: S.c[name]
    for name in (
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
}
_SESSION_TYPES = frozenset(t.value for t in SessionType)
_MAX_COUNT = 2**31 - 1  # the metric tables' INTEGER columns on PostgreSQL


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """What one backfill did: sessions it recorded, and archived records it could not read.

    Skipped records stay unrecorded, so every later backfill meets (and reports) them
    again until they are repaired or deleted.
    """

    recorded: int = 0
    skipped: tuple[SkippedRecord, ...] = ()


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise ValueError(f"{name} is not a count")
    return value


def _labels(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and 0 < len(v) <= MAX_LABEL_CHARS for v in value
    ):
        raise ValueError(f"{name} is not a list of labels")
    return value


def _query_counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError("query_type_counts is not an object")
    return {
        _labels("query_type_counts", [k])[0]: _count(f"query_type_counts[{k!r}]", v)
        for k, v in value.items()
    }


def _archived_facts(row: dict[str, Any]) -> SessionFacts:
    """Facts from a decoded ``sessions`` row; a ValueError says what is damaged."""
    for name in ("created_at", "expires_at", "last_accessed_at", "archived_at"):
        if not isinstance(row[name], datetime):
            raise ValueError(f"{name} is not a timestamp")
    if row["closed_at"] is not None and not isinstance(row["closed_at"], datetime):
        raise ValueError("closed_at is not a timestamp")
    if row["session_type"] not in _SESSION_TYPES:
        raise ValueError("session_type is not a session type")
    user_id = row["user_id"]
    if user_id is not None and (not isinstance(user_id, str) or not 0 < len(user_id) <= 255):
        raise ValueError("user_id is not a user id")
    if not isinstance(row["id"], UUID):
        raise ValueError("id is not a UUID")
    return SessionFacts.build(
        session_id=row["id"],
        user_id=user_id,
        session_type=row["session_type"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_accessed_at=row["last_accessed_at"],
        closed_at=row["closed_at"],
        archived_at=row["archived_at"],
        total_queries=_count("total_queries", row["total_queries"]),
        cache_hits=_count("cache_hits", row["cache_hits"]),
        assets=_labels("assets", row["assets"]),
        tags=_labels("tags", row["tags"]),
        query_type_counts=_query_counts(row["query_type_counts"]),
        now=row["archived_at"],
    )


async def _unrecorded_archived(
    engine: AsyncEngine, *, archived_since: datetime | None, after: Any, limit: int
) -> tuple[list[SessionFacts], list[SkippedRecord], Any]:
    """Up to ``limit`` archived sessions without facts, by id after ``after``: the facts of
    those that can be read, the records of those that cannot, and the last id seen."""
    read = RowReader(engine.dialect, _ARCHIVED_COLUMNS)
    recorded = exists().where(M.c.session_id == S.c.id)
    condition = and_(S.c.archived_at.is_not(None), ~recorded)
    if archived_since is not None:
        condition = and_(condition, S.c.archived_at >= archived_since)
    if after is not None:
        # Compared as stored, so a row whose id is damaged is still passed over once.
        condition = and_(condition, as_stored(S.c.id) > after)
    stmt = select(*read.columns, as_stored(S.c.id)).where(condition).order_by(S.c.id).limit(limit)
    reader = engine.execution_options(**{READ_ONLY_OPTION: True})
    async with reader.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    facts: list[SessionFacts] = []
    skipped: list[SkippedRecord] = []
    for row in rows:
        try:
            facts.append(_archived_facts(read(row)))
        except ValueError as exc:
            skipped.append(SkippedRecord(shown_id(row[-1]), str(exc)))
    return facts, skipped, rows[-1][-1] if rows else after


async def record_unrecorded_archived(
    engine: AsyncEngine,
    *,
    now: datetime,
    archived_since: datetime | None = None,
    batch_size: int = 1000,
) -> BackfillReport:
    """Record every archived session (archived at or after ``archived_since``) without facts.

    A record that cannot be read is skipped, logged with its session id and listed in the
    report; the others are recorded. Sessions another run records meanwhile are not counted
    here, so concurrent backfills count each session once between them.
    """
    recorded, skipped, after = 0, [], None
    while True:
        facts, unreadable, after = await _unrecorded_archived(
            engine, archived_since=archived_since, after=after, limit=batch_size
        )
        report_skipped(unreadable, doing="recording archived sessions")
        skipped.extend(unreadable)
        if facts:
            recorded += await add_missing_metrics(engine, facts, recorded_at=now)
        if len(facts) + len(unreadable) < batch_size:
            return BackfillReport(recorded, tuple(skipped))


async def backfill_archived_metrics(
    engine: AsyncEngine,
    *,
    now: datetime,
    archived_since: datetime | None = None,
    batch_size: int = 1000,
) -> int:
    """How many sessions :func:`record_unrecorded_archived` recorded (skips are logged)."""
    report = await record_unrecorded_archived(
        engine, now=now, archived_since=archived_since, batch_size=batch_size
    )
    return report.recorded
