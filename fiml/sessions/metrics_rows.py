"""Reading recorded sessions back row by row, for exports and a user's recent sessions.

Rows are read a page at a time (keyset pagination on ``created_at, session_id``), with
their assets, tags and query-type counts from the side tables for an export, so a reader
never holds more than a page of database rows beyond what it returns. Each row is decoded
on its own (:mod:`fiml.sessions.row_decoding`): a record that cannot be read is passed
over and logged, and the others are read as usual.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, Table, select, tuple_

from fiml.sessions.metrics import ABANDONED, MA, MQ, MT, M, MetricFilters
from fiml.sessions.row_decoding import (
    RowReader,
    SkippedRecord,
    as_stored,
    report_skipped,
    shown_id,
)

__all__ = [
    "MetricRowsPage",
    "RecordedRows",
    "read_export_rows",
    "read_metric_rows_page",
    "read_recent_rows",
]

_PAGE = 1000


@dataclass(slots=True)
class RecordedRows:
    """Recorded sessions as JSON-ready dicts, and the records passed over as unreadable."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)


ROW_COLUMNS: dict[str, ColumnElement[Any]] = {
    "session_id": M.c.session_id,
    "user_id": M.c.user_id,
    "session_type": M.c.session_type,
    "created_at": M.c.created_at,
    "ended_at": M.c.ended_at,
    "duration_seconds": M.c.duration_seconds,
    "total_queries": M.c.total_queries,
    "cache_hits": M.c.cache_hits,
    "completed": M.c.completed,
    "abandoned": ABANDONED,
}
_KEY = (as_stored(M.c.created_at), as_stored(M.c.session_id))


@dataclass(frozen=True, slots=True)
class MetricRowsPage:
    """One page of recorded sessions: those that could be read, those that could not, and
    where the next page starts (None after the last page)."""

    rows: list[dict[str, Any]]
    skipped: list[SkippedRecord]
    after: tuple[Any, Any] | None


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is not a count")
    return value


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A decoded ``session_metrics`` row as JSON-ready values; a ValueError if damaged."""
    duration = row["duration_seconds"]
    checks = {
        "session_id": isinstance(row["session_id"], UUID),
        "user_id": row["user_id"] is None or isinstance(row["user_id"], str),
        "session_type": isinstance(row["session_type"], str),
        "created_at": isinstance(row["created_at"], datetime),
        "ended_at": isinstance(row["ended_at"], datetime),
        "duration_seconds": isinstance(duration, int | float) and not isinstance(duration, bool),
        "completed": isinstance(row["completed"], bool),
    }
    for name, good in checks.items():
        if not good:
            raise ValueError(f"{name} holds {type(row[name]).__name__} {row[name]!r:.40}")
    return {
        **row,
        "session_id": str(row["session_id"]),
        "created_at": row["created_at"].isoformat(),
        "ended_at": row["ended_at"].isoformat(),
        "duration_seconds": float(duration),
        "total_queries": _count("total_queries", row["total_queries"]),
        "cache_hits": _count("cache_hits", row["cache_hits"]),
        "abandoned": bool(row["abandoned"]),
    }


def read_metric_rows_page(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    *,
    after: tuple[Any, Any] | None,
    limit: int,
    newest_first: bool = False,
) -> MetricRowsPage:
    """Up to ``limit`` recorded sessions matching ``conditions``, ordered by creation then
    id, after the key ``after``; each row is decoded on its own (see ``row_decoding``)."""
    created, sid = _KEY
    read = RowReader(conn.dialect, ROW_COLUMNS)
    stmt = select(*read.columns, *_KEY).where(*conditions)
    if after is not None:
        # Keys compared as stored, so a row with a damaged key is still passed over once.
        later = tuple_(created, sid) < after if newest_first else tuple_(created, sid) > after
        stmt = stmt.where(later)
    order: list[Any] = [M.c.created_at, M.c.session_id]
    if newest_first:
        order = [column.desc() for column in order]
    rows = (conn.execute(stmt.order_by(*order).limit(limit))).all()
    good: list[dict[str, Any]] = []
    skipped: list[SkippedRecord] = []
    for row in rows:
        try:
            good.append(_json_row(read(row)))
        except ValueError as exc:
            skipped.append(SkippedRecord(shown_id(row[-1]), str(exc)))
    last = (rows[-1][-2], rows[-1][-1]) if len(rows) == limit else None
    return MetricRowsPage(good, skipped, last)


def _side_rows(
    conn: Connection, table: Table, names: Sequence[str], ids: list[UUID]
) -> list[dict[str, Any]]:
    """The rows of a side table for ``ids``, decoded one at a time, ordered by ``names``."""
    columns = {"session_id": table.c.session_id, **{n: table.c[n] for n in names}}
    read = RowReader(conn.dialect, columns)
    stmt = select(*read.columns).where(table.c.session_id.in_(ids))
    stmt = stmt.order_by(*(table.c[n] for n in names))
    decoded = []
    for row in (conn.execute(stmt)).all():
        try:
            decoded.append(read(row))
        except ValueError:
            continue  # its session id is damaged, so it belongs to none of ``ids``
    return decoded


def _with_side_rows(
    conn: Connection, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[SkippedRecord]]:
    """``rows`` with their assets, tags and query-type counts; a session one of whose
    side rows holds a value of the wrong kind is skipped."""
    ids = [UUID(r["session_id"]) for r in rows]
    labels: dict[str, dict[UUID, list[str]]] = {
        "assets": defaultdict(list),
        "tags": defaultdict(list),
    }
    types: dict[UUID, dict[str, int]] = defaultdict(dict)
    damaged: dict[UUID, str] = {}
    for key, table, column in (("assets", MA, "asset"), ("tags", MT, "tag")):
        for side in _side_rows(conn, table, [column], ids):
            if isinstance(side[column], str):
                labels[key][side["session_id"]].append(side[column])
            else:
                damaged[side["session_id"]] = f"{table.name} holds {side[column]!r:.40}"
    for side in _side_rows(conn, MQ, ["query_type", "queries"], ids):
        kind, n = side["query_type"], side["queries"]
        if isinstance(kind, str) and isinstance(n, int) and not isinstance(n, bool):
            types[side["session_id"]][kind] = n
        else:
            damaged[side["session_id"]] = f"{MQ.name} holds {kind!r:.40}: {n!r:.40}"
    good: list[dict[str, Any]] = []
    skipped: list[SkippedRecord] = []
    for row, sid in zip(rows, ids, strict=True):
        if sid in damaged:
            skipped.append(SkippedRecord(str(sid), damaged[sid]))
            continue
        side_values = {key: labels[key].get(sid, []) for key in labels}
        good.append({**row, **side_values, "query_types": types.get(sid, {})})
    return good, skipped


def read_export_rows(conn: Connection, filters: MetricFilters, since: datetime) -> RecordedRows:
    """Every recorded session of the window, oldest first, with its side rows, and the
    records that could not be read (logged with their session ids)."""
    exported = RecordedRows()
    after: tuple[Any, Any] | None = None
    while True:
        page = read_metric_rows_page(conn, filters.conditions(since), after=after, limit=_PAGE)
        rows, unreadable = _with_side_rows(conn, page.rows) if page.rows else ([], [])
        exported.rows.extend(rows)
        for damaged in (page.skipped, unreadable):
            report_skipped(damaged, doing="exporting")
            exported.skipped.extend(damaged)
        if page.after is None:
            return exported
        after = page.after


def read_recent_rows(
    conn: Connection, filters: MetricFilters, since: datetime, *, limit: int
) -> RecordedRows:
    """The ``limit`` most recently created recorded sessions of the window, newest first
    (without side rows); a record that cannot be read is passed over, logged and listed,
    and the next older one takes its place."""
    recent = RecordedRows()
    after: tuple[Any, Any] | None = None
    while len(recent.rows) < limit:
        page = read_metric_rows_page(
            conn,
            filters.conditions(since),
            after=after,
            limit=limit - len(recent.rows),
            newest_first=True,
        )
        report_skipped(page.skipped, doing="summarizing a user's sessions")
        recent.skipped.extend(page.skipped)
        recent.rows.extend(page.rows)
        if page.after is None:
            break
        after = page.after
    return recent
