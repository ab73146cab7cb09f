"""SQL backend on SQLAlchemy 2 async: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Every write is one transaction that locks the session's row first (``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent writers in any number
of processes queue instead of overwriting each other; what a write may do is decided by
:func:`~fiml.sessions.backends.rules.plan_write`, under that lock. Queries are rows of
their own: tracking one is an insert plus an update of the session's counters, whatever
the history's length. Database faults are storage errors naming the dialect
(:func:`~fiml.sessions.backends.sql_faults.unavailable_as_error`). The archive side of the
database (:class:`~fiml.sessions.backends.sql_archive.SqlArchive`) is what this class is
built on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

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
from fiml.sessions.backends.sql_faults import unavailable_as_error
from fiml.sessions.backends.sql_metrics import SqlMetrics
from fiml.sessions.backends.sql_rows import Q, S, decoded, query_values, selected, session_from_row
from fiml.sessions.backends.summaries import skip_corrupt, summaries_from_values
from fiml.sessions.models import (
    QueryRecord,
    Session,
    SessionSummary,
    queries_from_rows,
    utcnow,
)
from fiml.sessions.quarantine import UNDECODABLE, failure_reason, release

__all__ = ["ArchivedInPlace", "SqlBackend", "unavailable_as_error"]

_LISTING_COLUMNS = selected(SUMMARY_FIELDS)


class SqlBackend(SqlArchive, SqlMetrics):
    """Sessions in a SQL database; also the archive of every deployment (its archive side is
    :class:`~fiml.sessions.backends.sql_archive.SqlArchive`, its analytics methods
    :class:`~fiml.sessions.backends.sql_metrics.SqlMetrics`)."""

    async def insert(self, session: Session) -> None:
        """Store a new session and any queries it already holds."""
        async with self._write() as conn:
            await conn.execute(insert(S), [values_of(session)])
            queries = session.state.history.queries
            if queries:
                start = session.state.history.total_queries - len(queries) + 1
                rows = [query_values(session.id, start + i, q) for i, q in enumerate(queries)]
                await conn.execute(insert(Q), rows)

    async def load(self, session_id: UUID, *, recent_queries: int | None) -> Session | None:
        """A session with its latest ``recent_queries`` queries (None: the whole history);
        a row that does not decode is a CorruptRecordError naming the session."""
        try:
            return await self._load(session_id, recent_queries=recent_queries)
        except UNDECODABLE as exc:
            raise CorruptRecordError(self.name, session_id, failure_reason(exc)) from None

    async def _load(self, session_id: UUID, *, recent_queries: int | None) -> Session | None:
        async with self._read() as conn:
            row = (await conn.execute(select(S).where(S.c.id == session_id))).mappings().first()
            if row is None:
                return None
            stmt = select(Q).where(Q.c.session_id == session_id)
            if recent_queries is None:
                rows = (await conn.execute(stmt.order_by(Q.c.seq))).all()
            elif recent_queries > 0:
                lowest = row["total_queries"] - recent_queries
                stmt = stmt.where(Q.c.seq > lowest).order_by(Q.c.seq)
                rows = (await conn.execute(stmt)).all()
            else:
                rows = []
        return session_from_row(row, queries_from_rows(rows))

    async def load_history(self, session_id: UUID, *, offset: int, limit: int) -> list[QueryRecord]:
        """Queries ``offset+1 .. offset+limit``, oldest first."""
        stmt = (
            select(Q)
            .where(Q.c.session_id == session_id, Q.c.seq > offset, Q.c.seq <= offset + limit)
            .order_by(Q.c.seq)
        )
        try:
            async with self._read() as conn:
                rows = (await conn.execute(stmt)).all()
            return queries_from_rows(rows)
        except UNDECODABLE as exc:
            raise CorruptRecordError(self.name, session_id, failure_reason(exc)) from None

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply one write atomically under the session's row lock, as the rules decide."""
        async with self._write() as conn:
            locked = select(S).where(S.c.id == session_id).with_for_update()
            row = (await conn.execute(locked)).mappings().first()
            if row is None:
                raise SessionNotFoundError(session_id)
            recorded = await self._recorded_ids(conn, session_id, changes.new_queries)
            stored = StoredSession.of(row, recorded_query_ids=recorded)
            write = plan_write(session_id, stored, changes, now=now, limits=limits)
            if write.new_queries:
                start = stored.total_queries + 1
                queries = enumerate(write.new_queries, start)
                await conn.execute(insert(Q), [query_values(session_id, n, q) for n, q in queries])
            await conn.execute(update(S).where(S.c.id == session_id).values(**write.values))
        return write.counters

    @staticmethod
    async def _recorded_ids(
        conn: AsyncConnection, session_id: UUID, queries: list[QueryRecord]
    ) -> set[UUID]:
        """Which of ``queries`` the session has recorded already."""
        if not queries:
            return set()
        ids = [q.id for q in queries]
        stmt = select(Q.c.id).where(Q.c.session_id == session_id, Q.c.id.in_(ids))
        return set((await conn.execute(stmt)).scalars())

    async def delete(self, session_id: UUID) -> bool:
        """Delete a session and its queries."""
        async with self._write() as conn:
            await conn.execute(delete(Q).where(Q.c.session_id == session_id))
            result = await conn.execute(delete(S).where(S.c.id == session_id))
            await release(conn, [session_id])  # an operator's delete ends a quarantine
        return bool(result.rowcount)

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
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
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
        async with self._read() as conn:
            return list((await conn.execute(stmt)).scalars())

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
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

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
        return export

    async def thaw(self, session_ids: Sequence[UUID]) -> None:
        """Nothing to do: SQL exports freeze nothing."""

    async def remove_archived(self, session_ids: Sequence[UUID]) -> int:
        """Delete sessions by id (used when another backend holds the archive)."""
        removed = 0
        for session_id in session_ids:
            removed += await self.delete(session_id)
        return removed
