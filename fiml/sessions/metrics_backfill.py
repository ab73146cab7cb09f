"""Recording the archived sessions that have no analytics facts yet (the metrics job).

Archival records a session's facts in the transaction that archives it, so only sessions
archived while analytics was off lack them. :func:`record_unrecorded_archived` finds those
a page at a time and reads each archived record on its own, so that a damaged one is
skipped and reported while the others are recorded. Facts are inserted only where none
exist, so concurrent backfills count each session once between them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, Table, and_, exists, select

from fiml.sessions.db import SessionRecord
from fiml.sessions.limits import MAX_LABEL_CHARS
from fiml.sessions.metrics import FACT_SOURCES, M, SessionFacts, insert_missing_facts
from fiml.sessions.models import SessionType
from fiml.sessions.row_decoding import (
    RowReader,
    SkippedRecord,
    as_stored,
    report_skipped,
    shown_id,
)

__all__ = ["BackfillReport", "Connections", "record_unrecorded_archived"]

T = TypeVar("T")


class Connections(Protocol):
    """Runs a function of a connection to the archive (in a transaction, for writes)."""

    def __call__(self, work: Callable[[Connection], T], /) -> Awaitable[T]: ...


S = cast(Table, SessionRecord.__table__)
_ARCHIVED_COLUMNS: dict[str, ColumnElement[Any]] = {name: S.c[name] for name in FACT_SOURCES}
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
    read: Connections, *, archived_since: datetime | None, after: Any, limit: int
) -> tuple[list[SessionFacts], list[SkippedRecord], Any]:
    """Up to ``limit`` archived sessions without facts, by id after ``after``: the facts of
    those that can be read, the records of those that cannot, and the last id seen."""
    recorded = exists().where(M.c.session_id == S.c.id)
    condition = and_(S.c.archived_at.is_not(None), ~recorded)
    if archived_since is not None:
        condition = and_(condition, S.c.archived_at >= archived_since)
    if after is not None:
        # Compared as stored, so a row whose id is damaged is still passed over once.
        condition = and_(condition, as_stored(S.c.id) > after)

    def page(conn: Connection) -> tuple[RowReader, Sequence[Any]]:
        decode = RowReader(conn.dialect, _ARCHIVED_COLUMNS)
        stmt = select(*decode.columns, as_stored(S.c.id)).where(condition)
        return decode, conn.execute(stmt.order_by(S.c.id).limit(limit)).all()

    decode, rows = await read(page)
    facts: list[SessionFacts] = []
    skipped: list[SkippedRecord] = []
    for row in rows:
        try:
            facts.append(_archived_facts(decode(row)))
        except ValueError as exc:
            skipped.append(SkippedRecord(shown_id(row[-1]), str(exc)))
    return facts, skipped, rows[-1][-1] if rows else after


async def record_unrecorded_archived(
    read: Connections,
    write: Connections,
    *,
    now: datetime,
    archived_since: datetime | None = None,
    batch_size: int = 1000,
) -> BackfillReport:
    """Record every archived session (archived at or after ``archived_since``) without facts,
    reading pages through ``read`` and inserting facts through ``write``.

    A record that cannot be read is skipped, logged with its session id and listed in the
    report; the others are recorded. Sessions another run records meanwhile are not counted
    here, so concurrent backfills count each session once between them.
    """
    recorded, skipped, after = 0, [], None
    while True:
        facts, unreadable, after = await _unrecorded_archived(
            read, archived_since=archived_since, after=after, limit=batch_size
        )
        report_skipped(unreadable, doing="recording archived sessions")
        skipped.extend(unreadable)
        if facts:
            recorded += await write(
                lambda conn: insert_missing_facts(conn, facts, recorded_at=now)  # noqa: B023
            )
        if len(facts) + len(unreadable) < batch_size:
            return BackfillReport(recorded, tuple(skipped))
