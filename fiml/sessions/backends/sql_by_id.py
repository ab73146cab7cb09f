"""The statements that read or write one session by its id, as each dialect runs them.

On PostgreSQL each names the partition key (:mod:`~fiml.sessions.backends.sql_partitions`).
One that did not would be planned over every partition of ``sessions`` (and
``session_queries``) and probe each one's key index: one per month of retention, so an
active session's every read and write would cost more the more months are kept. So a
statement on an active session holds to the active partitions
(:func:`~fiml.sessions.backends.sql_partitions.in_active_partition`), and the planner
prunes the others when it plans it. Writes take active sessions only; the one that finds
no active row reads the archived months next (``archived=True``): an archived session is
then read, or refused as archived by a write, and an unknown id, or another owner's,
costs the same two reads. An archived session's queries are read in its month's
partition, which its row names (``archive_month``). The archive of Redis holds no active
session (``SqlArchive.holds_active``): its reads by id look in every partition at once,
one statement, as the statements built with ``partitioned=False`` do.

SQLite has no partitions and no ``archive_month``: its statements are the plain ones.
Each statement is built once per shape, with bound parameters, and cached.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnElement, Delete, Select, String, Table, Update, bindparam, select
from sqlalchemy import delete as delete_from
from sqlalchemy import update as update_of
from sqlalchemy.sql.expression import type_coerce

from fiml.sessions.backends.sql_partitions import (
    ARCHIVE_MONTH,
    archived_months,
    in_active_partition,
    queries_table,
    sessions_table,
)
from fiml.sessions.backends.sql_rows import Q, S

__all__ = [
    "RECORDED",
    "drop_placed",
    "locked_row",
    "query_range",
    "row_to_plan",
    "session_row",
    "update_session",
]

RECORDED = "fiml_query_recorded"
"""The column of :func:`row_to_plan` saying whether the write's query is recorded."""


def _tables(partitioned: bool) -> tuple[Table, Table]:
    return (sessions_table, queries_table) if partitioned else (S, Q)


def _held(table: Table, partitioned: bool, archived: bool) -> list[ColumnElement[bool]]:
    if not partitioned:
        return []
    return [archived_months(table) if archived else in_active_partition(table)]


@functools.cache
def session_row(partitioned: bool, owned: bool, archived: bool = False) -> Select[Any]:
    """The session's row (``sid``), with ``owned`` only if it is ``owner``'s; read among
    the archived months with ``archived``, with its ``archive_month`` then."""
    sessions, _ = _tables(partitioned)
    columns = [sessions.c[c.name] for c in S.c]
    if partitioned and archived:
        columns.append(sessions.c[ARCHIVE_MONTH])
    stmt = select(*columns).where(
        sessions.c.id == bindparam("sid"), *_held(sessions, partitioned, archived)
    )
    if owned:  # another owner's session: no row, as for an unknown id (the same lookup)
        stmt = stmt.where(sessions.c.user_id == bindparam("owner"))
    return stmt


@functools.cache
def query_range(where: str) -> Select[Any]:
    """PostgreSQL: queries ``after+1 .. last`` of session ``sid``, oldest first, as a
    ``QueryRecord`` is built from them, in the active partition (``where="active"``), in
    ``month``'s (``"month"``) or wherever they are (``"any"``)."""
    queries = queries_table
    columns = [
        # The id as asyncpg returns it, a UUID: the model parses it once, where SQLAlchemy
        # would build a UUID for the model to check again.
        type_coerce(queries.c.id, String).label("id") if c.name == "id" else queries.c[c.name]
        for c in Q.c
        if c.name not in ("session_id", "seq")
    ]
    held = {
        "active": [in_active_partition(queries)],
        "month": [queries.c[ARCHIVE_MONTH] == bindparam("month")],
        "any": [],
    }[where]
    return (
        select(*columns)
        .where(
            queries.c.session_id == bindparam("sid"),
            queries.c.seq > bindparam("after"),
            queries.c.seq <= bindparam("last"),
            *held,
        )
        .order_by(queries.c.seq)
    )


@functools.cache
def locked_row(names: frozenset[str], partitioned: bool, archived: bool = False) -> Select[Any]:
    """The columns ``names`` of the session's row (``sid``), locked."""
    sessions, _ = _tables(partitioned)
    columns = (sessions.c[c.name] for c in S.c if c.name in names)
    held = _held(sessions, partitioned, archived)
    return select(*columns).where(sessions.c.id == bindparam("sid"), *held).with_for_update()


@functools.cache
def row_to_plan(
    names: frozenset[str], with_query: bool, partitioned: bool, archived: bool = False
) -> Select[Any]:
    """The session's row as :func:`locked_row` reads it, unlocked, and with a query
    whether the write's one query (``qid``) is recorded (:data:`RECORDED`): one
    statement, one snapshot. A session's queries share its partition's month."""
    sessions, queries = _tables(partitioned)
    columns = [sessions.c[c.name] for c in S.c if c.name in names]
    held = _held(sessions, partitioned, archived)
    stmt = select(*columns).where(sessions.c.id == bindparam("sid"), *held)
    if with_query:
        recorded = select(queries.c.id).where(
            queries.c.session_id == sessions.c.id,
            queries.c.id == bindparam("qid"),
            *_held(queries, partitioned, archived),
        )
        stmt = stmt.add_columns(recorded.exists().label(RECORDED))
    return stmt


@functools.cache
def update_session(partitioned: bool) -> Update:
    """Sets the columns named by the parameters given with it (SQLAlchemy's own rule) of
    the active session ``sid_``."""
    sessions, _ = _tables(partitioned)
    held = _held(sessions, partitioned, False)
    return update_of(sessions).where(sessions.c.id == bindparam("sid_"), *held)


@functools.cache
def drop_placed(partitioned: bool) -> Delete:
    """Deletes the active session ``sid``'s queries after ``after``."""
    _, queries = _tables(partitioned)
    held = _held(queries, partitioned, False)
    return delete_from(queries).where(
        queries.c.session_id == bindparam("sid"), queries.c.seq > bindparam("after"), *held
    )
