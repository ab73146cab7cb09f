"""SQL backend on SQLAlchemy 2: SQLite (the standard library's ``sqlite3`` in a database
thread) and PostgreSQL (asyncpg).

Each operation's SQL is one synchronous function of a connection, run whole in one hop
(see :class:`~fiml.sessions.backends.sql_archive.SqlArchive`). Every write is one
transaction that locks the session's row first (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so concurrent writers in any number of processes queue
instead of overwriting each other; what a write may do is decided by
:func:`~fiml.sessions.backends.rules.plan_write`, under that lock. Queries are rows of
their own: tracking one is the row lock, an insert that skips a query already recorded
(``ON CONFLICT DO NOTHING ... RETURNING``, so the duplicate check is no statement of its
own) and an update of the session's counters, whatever the history's length. Database
faults are storage errors naming the dialect
(:func:`~fiml.sessions.backends.sql_faults.unavailable_as_error`). The archive side of the
database (:class:`~fiml.sessions.backends.sql_archive.SqlArchive`) is what this class is
built on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from fiml.core.errors import CorruptRecordError, SessionNotFoundError
from fiml.sessions.backends.base import (
    ExportedSessions,
    HistoryCounters,
    ListCursor,
    SessionChanges,
    WriteLimits,
)
from fiml.sessions.backends.fields import SUMMARY_FIELDS, values_of
from fiml.sessions.backends.rules import StoredSession, plan_write
from fiml.sessions.backends.sql_archive import ArchivedInPlace, SqlArchive
from fiml.sessions.backends.sql_events import (
    append_events,
    copy_events,
    delete_events,
    read_events,
    write_events,
)
from fiml.sessions.backends.sql_faults import unavailable_as_error
from fiml.sessions.backends.sql_metrics import SqlMetrics
from fiml.sessions.backends.sql_rows import Q, S, decoded, query_values, selected, session_from_row
from fiml.sessions.backends.sql_sharing import SqlSharing
from fiml.sessions.backends.summaries import skip_corrupt, summaries_from_values
from fiml.sessions.events import SessionEvent
from fiml.sessions.models import (
    STATE_SECTIONS,
    QueryRecord,
    Session,
    SessionSummary,
    queries_from_rows,
    utcnow,
)
from fiml.sessions.quarantine import UNDECODABLE, failure_reason, release

__all__ = ["ArchivedInPlace", "SqlBackend", "unavailable_as_error"]

_LISTING_COLUMNS = selected(SUMMARY_FIELDS)
_SECTION_COLUMNS = frozenset(STATE_SECTIONS)
_QUERY_COLUMNS = [
    # The id as the driver returns it (SQLite: hex text, asyncpg: a UUID): the model parses
    # it once, where SQLAlchemy would build a UUID for the model to check again.
    type_coerce(Q.c.id, String).label("id") if c.name == "id" else c
    for c in Q.c
    if c.name not in ("session_id", "seq")
]
"""What a ``QueryRecord`` is built from (the session and position are known)."""

# The hot statements, built once with bound parameters: SQLAlchemy then finds each one's
# compiled form in its cache by a key computed from the same object every time.
_SESSION_ROW = select(S).where(S.c.id == bindparam("sid"))
_OWNED_SESSION_ROW = _SESSION_ROW.where(S.c.user_id == bindparam("owner"))
_QUERY_RANGE = (
    select(*_QUERY_COLUMNS)
    .where(
        Q.c.session_id == bindparam("sid"),
        Q.c.seq > bindparam("after"),
        Q.c.seq <= bindparam("last"),
    )
    .order_by(Q.c.seq)
)
_INSERT_SESSION = insert(S)
_INSERT_QUERIES = insert(Q)
_UPDATE_SESSION = update(S).where(S.c.id == bindparam("sid_"))
"""Sets the columns named by the parameters given with it (SQLAlchemy's own rule)."""
_DROP_PLACED = delete(Q).where(Q.c.session_id == bindparam("sid"), Q.c.seq > bindparam("after"))


@functools.cache
def _locked_row(sections: frozenset[str]) -> Select[Any]:
    """The session's row, locked, without the state sections a write leaves alone."""
    columns = [c for c in S.c if c.name not in _SECTION_COLUMNS - sections]
    return select(*columns).where(S.c.id == bindparam("sid")).with_for_update()


@functools.cache
def _insert_new_queries(dialect: str) -> Any:
    """Inserts a write's queries, skipping those the session recorded already (same id),
    and returns the ids it inserted: the duplicate check and the insert in one statement."""
    ins = (postgresql if dialect == "postgresql" else sqlite).insert(Q)
    return ins.on_conflict_do_nothing(index_elements=[Q.c.session_id, Q.c.id]).returning(Q.c.id)


def _touched_sections(changes: SessionChanges) -> frozenset[str]:
    return frozenset(
        section
        for section in STATE_SECTIONS
        if changes.set_keys.get(section) or changes.deleted_keys.get(section)
    )


def _insert(conn: Connection, session: Session, events: Sequence[SessionEvent]) -> None:
    conn.execute(_INSERT_SESSION, [values_of(session)])
    copy_events(conn, {session.id: events})
    queries = session.state.history.queries
    if queries:
        start = session.state.history.total_queries - len(queries) + 1
        rows = [query_values(session.id, start + i, q) for i, q in enumerate(queries)]
        conn.execute(_INSERT_QUERIES, rows)


def _load(
    conn: Connection, session_id: UUID, recent_queries: int | None, owner: str | None
) -> Session | None:
    if owner is None:
        found = conn.execute(_SESSION_ROW, {"sid": session_id})
    else:  # another owner's session: no row, as for an unknown id (the same index lookup)
        found = conn.execute(_OWNED_SESSION_ROW, {"sid": session_id, "owner": owner})
    row = found.mappings().first()
    if row is None:
        return None
    rows: Sequence[Any] = []
    if recent_queries is None or recent_queries > 0:
        # Bounded by the counters read with the row: the queries agree with them without
        # a snapshot shared by the two statements (queries are only ever appended).
        total = row["total_queries"]
        after = 0 if recent_queries is None else total - recent_queries
        page = {"sid": session_id, "after": after, "last": total}
        rows = conn.execute(_QUERY_RANGE, page).all()
    return session_from_row(row, queries_from_rows(rows))


def _apply(
    conn: Connection,
    session_id: UUID,
    changes: SessionChanges,
    now: datetime,
    limits: WriteLimits,
) -> HistoryCounters:
    """One write, under the session's row lock (``SELECT ... FOR UPDATE``; on SQLite the
    transaction's ``BEGIN IMMEDIATE``), as :func:`plan_write` decides.

    The write's queries are inserted before the rules run, by an insert that skips those
    already recorded and says which it inserted: the rules learn what is recorded from it
    without a query of their own. A refusal raises, and the transaction takes the insert
    back with everything else.
    """
    locked = conn.execute(_locked_row(_touched_sections(changes)), {"sid": session_id})
    row = locked.mappings().first()
    if row is None:
        raise SessionNotFoundError(session_id)
    stored_values = dict(row)  # a dict: the rules also ask for the sections not read
    total = stored_values["total_queries"]
    candidates: dict[UUID, QueryRecord] = {}
    for query in changes.new_queries:
        candidates.setdefault(query.id, query)  # the first of each id, as the rules keep
    recorded: set[UUID] = set()
    if candidates:
        placed = enumerate(candidates.values(), total + 1)
        rows = [query_values(session_id, n, q) for n, q in placed]
        inserted = set(conn.execute(_insert_new_queries(conn.dialect.name), rows).scalars())
        recorded = candidates.keys() - inserted
    stored = StoredSession.of(stored_values, recorded_query_ids=recorded)
    write = plan_write(session_id, stored, changes, now=now, limits=limits)
    if recorded and write.new_queries:
        # Some were recorded already: the others were placed after gaps; renumber them.
        conn.execute(_DROP_PLACED, {"sid": session_id, "after": total})
        rows = [query_values(session_id, n, q) for n, q in enumerate(write.new_queries, total + 1)]
        conn.execute(_INSERT_QUERIES, rows)
    conn.execute(_UPDATE_SESSION, {"sid_": session_id, **write.values})
    append_events(conn, session_id, write_events(changes, write.new_queries, now=now))
    return write.counters


def _delete(conn: Connection, session_id: UUID) -> bool:
    conn.execute(delete(Q).where(Q.c.session_id == session_id))
    delete_events(conn, [session_id])
    result = conn.execute(delete(S).where(S.c.id == session_id))
    release(conn, [session_id])  # an operator's delete ends a quarantine
    return bool(result.rowcount)


class SqlBackend(SqlArchive, SqlMetrics, SqlSharing):
    """Sessions in a SQL database; also the archive of every deployment (its archive side is
    :class:`~fiml.sessions.backends.sql_archive.SqlArchive`, its analytics methods
    :class:`~fiml.sessions.backends.sql_metrics.SqlMetrics`, its grants and templates
    :class:`~fiml.sessions.backends.sql_sharing.SqlSharing`).

    Each method's SQL runs whole in one place (see :class:`SqlArchive`): one hop to the
    database thread and back on SQLite, one ``run_sync`` on PostgreSQL.
    """

    async def insert(self, session: Session, events: Sequence[SessionEvent] = ()) -> None:
        """Store a new session, any queries it already holds, and its first events."""
        await self._writing(lambda conn: _insert(conn, session, events))

    async def load(
        self, session_id: UUID, *, recent_queries: int | None, owner: str | None = None
    ) -> Session | None:
        """A session with its latest ``recent_queries`` queries (None: the whole history),
        with an ``owner`` only if it is theirs; a row that does not decode is a
        CorruptRecordError naming the session."""
        try:
            return await self._reading(lambda conn: _load(conn, session_id, recent_queries, owner))
        except UNDECODABLE as exc:
            raise CorruptRecordError(self.name, session_id, failure_reason(exc)) from None

    async def load_history(self, session_id: UUID, *, offset: int, limit: int) -> list[QueryRecord]:
        """Queries ``offset+1 .. offset+limit``, oldest first."""
        page = {"sid": session_id, "after": offset, "last": offset + limit}

        def read(conn: Connection) -> list[QueryRecord]:
            return queries_from_rows(conn.execute(_QUERY_RANGE, page).all())

        try:
            return await self._reading(read)
        except UNDECODABLE as exc:
            raise CorruptRecordError(self.name, session_id, failure_reason(exc)) from None

    async def load_events(self, session_id: UUID, *, after: int, limit: int) -> list[SessionEvent]:
        """Events ``after+1 ..`` of a session's timeline, at most ``limit``."""
        return await self._reading(
            lambda conn: read_events(conn, session_id, after=after, limit=limit)
        )

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply one write atomically under the session's row lock, as the rules decide."""
        return await self._writing(lambda conn: _apply(conn, session_id, changes, now, limits))

    async def delete(self, session_id: UUID) -> bool:
        """Delete a session and its queries."""
        return await self._writing(lambda conn: _delete(conn, session_id))

    async def list_user(
        self,
        user_id: str,
        *,
        include_archived: bool,
        limit: int,
        cursor: ListCursor | None,
    ) -> list[SessionSummary]:
        """A page of a user's sessions, newest first, through the (user, created) index."""
        stmt = select(*_LISTING_COLUMNS).where(S.c.user_id == user_id)
        if not include_archived:
            stmt = stmt.where(S.c.archived_at.is_(None))
        if cursor is not None:
            stmt = stmt.where(
                or_(
                    S.c.created_at < cursor.created_at,
                    and_(S.c.created_at == cursor.created_at, S.c.id < cursor.session_id),
                )
            )
        stmt = stmt.order_by(S.c.created_at.desc(), S.c.id.desc()).limit(limit)
        rows = await self._reading(lambda conn: conn.execute(stmt).mappings().all())
        entries = []
        for row in rows:
            try:
                entries.append(decoded(row, SUMMARY_FIELDS))
            except UNDECODABLE as exc:
                skip_corrupt(row["id"], exc)
        return summaries_from_values(entries, utcnow())

    async def expired_ids(self, *, now: datetime, limit: int, skip: int = 0) -> list[UUID]:
        """Unarchived sessions past expiry, through the partial expiry index."""
        stmt = (
            select(S.c.id)
            .where(S.c.archived_at.is_(None), S.c.expires_at <= now)
            .order_by(S.c.expires_at, S.c.id)
            .offset(skip)
            .limit(limit)
        )
        return await self._reading(lambda conn: list(conn.execute(stmt).scalars()))

    async def count_active(
        self,
        *,
        now: datetime,
        user_id: str | None = None,
        session_type: str | None = None,
        created_since: datetime | None = None,
    ) -> int:
        """Running sessions matching the filters, counted on the partial expiry index."""
        conditions = [S.c.archived_at.is_(None), S.c.closed_at.is_(None), S.c.expires_at > now]
        if user_id is not None:
            conditions.append(S.c.user_id == user_id)
        if session_type is not None:
            conditions.append(S.c.session_type == session_type)
        if created_since is not None:
            conditions.append(S.c.created_at >= created_since)
        stmt = select(func.count()).select_from(S).where(*conditions)
        return await self._reading(lambda conn: int(conn.execute(stmt).scalar_one()))

    async def export_sessions(self, session_ids: Sequence[UUID]) -> ExportedSessions:
        """Sessions with their whole histories (SQL has no freeze: it archives in place)."""
        export = ExportedSessions()
        for session_id in session_ids:
            try:
                session = await self.load(session_id, recent_queries=None)
            except CorruptRecordError as exc:
                export.unreadable[session_id] = exc.reason
                continue
            if session is not None:
                export.sessions.append(session)
                export.events[session_id] = await self.load_events(
                    session_id, after=0, limit=2**31 - 1
                )
        return export

    async def thaw(self, session_ids: Sequence[UUID]) -> None:
        """Nothing to do: SQL exports freeze nothing."""

    async def remove_archived(self, session_ids: Sequence[UUID]) -> int:
        """Delete sessions by id (used when another backend holds the archive)."""
        removed = 0
        for session_id in session_ids:
            removed += await self.delete(session_id)
        return removed
