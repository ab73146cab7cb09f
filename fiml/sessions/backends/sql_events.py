"""A session's timeline in SQL: the ``session_events`` rows (:mod:`fiml.sessions.events`).

Events are appended by the write they record, in its transaction and under its row lock,
so numbering each after the highest stored ``seq`` cannot race another writer of the
same session. On PostgreSQL's conditional write they are part of its one statement
(:func:`appended_events`), numbered after the highest ``seq`` of the statement's snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CTE, Connection, bindparam, delete, func, insert, select, union_all

from fiml.sessions.backends.base import SessionChanges
from fiml.sessions.backends.sql_rows import E
from fiml.sessions.events import NewEvent, SessionEvent, query_event, state_events
from fiml.sessions.history import QueryRecord

__all__ = [
    "append_events",
    "appended_event_values",
    "appended_events",
    "copy_events",
    "delete_events",
    "read_events",
    "write_events",
]

_APPEND_EVENT = insert(E).from_select(
    ["session_id", "seq", "kind", "at", "data"],
    select(
        bindparam("sid", type_=E.c.session_id.type),
        func.coalesce(func.max(E.c.seq), 0) + 1,
        bindparam("kind", type_=E.c.kind.type),
        bindparam("at", type_=E.c.at.type),
        bindparam("data", type_=E.c.data.type),
    ).where(E.c.session_id == bindparam("sid", type_=E.c.session_id.type)),
)
"""One event after the session's last: numbering and insert in one statement (a lookup at
the end of the key's range), one statement fewer per tracked query than a separate read."""
_INSERT_EVENTS = insert(E)
_EVENT_RANGE = (
    select(E.c.seq, E.c.kind, E.c.at, E.c.data)
    .where(E.c.session_id == bindparam("sid"), E.c.seq > bindparam("after"))
    .order_by(E.c.seq)
    .limit(bindparam("limit"))
)


def write_events(
    changes: SessionChanges, added: Sequence[QueryRecord], *, now: datetime
) -> list[NewEvent]:
    """The events of a write that was accepted: its state changes, then its new queries."""
    events = state_events(changes.set_keys, changes.deleted_keys, now=now)
    events += [query_event(q, changes.quotes, now=now) for q in added]
    return events


def append_events(conn: Connection, session_id: UUID, events: Sequence[NewEvent]) -> None:
    """Append ``events`` after the session's last one (call it under the session's lock)."""
    if events:
        rows = [{"sid": session_id, "kind": e.kind, "at": e.at, "data": e.data} for e in events]
        conn.execute(_APPEND_EVENT, rows)


def appended_events(bumped: CTE, count: int) -> CTE:
    """PostgreSQL: a data-modifying CTE appending ``count`` events (parameters
    :func:`appended_event_values`) to the session's timeline if ``bumped`` (the conditional
    update of its row) returned it, and nothing otherwise.

    They are numbered after the highest ``seq`` of the statement's snapshot: every event is
    appended by a write that bumps the session's version, and ``bumped`` updated the row
    only at the version its writer read, so no event was appended since (a write still
    running holds the row, and ``bumped`` then finds the version changed)."""
    last = select(func.coalesce(func.max(E.c.seq), 0)).where(
        E.c.session_id == bindparam("sid", type_=E.c.session_id.type)
    )
    after = last.scalar_subquery()
    rows = [
        select(
            bumped.c.id,
            after + n,
            *(bindparam(f"e{n}_{name}", type_=E.c[name].type) for name in _EVENT_FIELDS),
        )
        for n in range(1, count + 1)
    ]
    source = rows[0] if count == 1 else union_all(*rows)
    return insert(E).from_select(["session_id", "seq", *_EVENT_FIELDS], source).cte("new_events")


_EVENT_FIELDS = ("kind", "at", "data")


def appended_event_values(events: Sequence[NewEvent]) -> dict[str, Any]:
    """The parameters of :func:`appended_events` for ``events``."""
    values: dict[str, Any] = {}
    for n, e in enumerate(events, 1):
        values.update({f"e{n}_kind": e.kind, f"e{n}_at": e.at, f"e{n}_data": e.data})
    return values


def copy_events(conn: Connection, events: Mapping[UUID, Sequence[SessionEvent]]) -> None:
    """Store sessions' timelines as they were numbered elsewhere (archival, a fork)."""
    rows = [
        {"session_id": sid, "seq": e.seq, "kind": e.kind, "at": e.at, "data": e.data}
        for sid, timeline in events.items()
        for e in timeline
    ]
    if rows:
        conn.execute(_INSERT_EVENTS, rows)


def read_events(
    conn: Connection, session_id: UUID, *, after: int, limit: int
) -> list[SessionEvent]:
    """Up to ``limit`` events after the ``after``-th, in order."""
    page = {"sid": session_id, "after": after, "limit": limit}
    return [
        SessionEvent(seq=r.seq, kind=r.kind, at=r.at, data=r.data)
        for r in conn.execute(_EVENT_RANGE, page)
    ]


def delete_events(conn: Connection, session_ids: Sequence[UUID]) -> None:
    """Drop sessions' timelines (before their rows, as their queries are)."""
    conn.execute(delete(E).where(E.c.session_id.in_(session_ids)))
