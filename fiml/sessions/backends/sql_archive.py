"""A SQL database as the archive, the part of the SQL backend every deployment uses.

:class:`SqlArchive` holds the database's connections (a write is one transaction; SQLite
queues this process's writers, see below) and what the archive tier does: mark sessions
archived in place (SQL-only deployments), import sessions another tier exported (Redis),
record their analytics facts in the same transaction, keep the quarantine, and delete
archived sessions past retention. :class:`~fiml.sessions.backends.sql.SqlBackend` adds the
active tier on top of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fiml.sessions.backends.fields import by_name, values_of
from fiml.sessions.backends.sql_faults import unavailable_as_error
from fiml.sessions.backends.sql_rows import Q, S, decoded, query_values, selected
from fiml.sessions.db import READ_ONLY_OPTION, is_sqlite
from fiml.sessions.metrics import FACT_SOURCES, SessionFacts, insert_missing_facts
from fiml.sessions.models import Session
from fiml.sessions.quarantine import (
    QUARANTINE,
    UNDECODABLE,
    QuarantinedSession,
    failure_reason,
    list_quarantined,
    record_quarantined,
    release,
)
from fiml.sessions.schema import check_schema, upgrade_schema

__all__ = ["ArchivedInPlace", "SqlArchive"]

_QUERY_ROWS_PER_CALL = 5000
_FACT_FIELDS = tuple(by_name[name] for name in FACT_SOURCES)
"""What ``SessionFacts.build`` takes of a session archived in place."""
_FACT_COLUMNS = selected(_FACT_FIELDS)


def _facts_from_row(row: Any) -> SessionFacts:
    values = decoded(row, _FACT_FIELDS)
    return SessionFacts.build(session_id=values.pop("id"), now=values["archived_at"], **values)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(slots=True)
class ArchivedInPlace:
    """What :meth:`SqlArchive.archive_in_place` did."""

    archived: int = 0
    metrics_recorded: int = 0
    unreadable: dict[UUID, tuple[str | None, str]] = field(default_factory=dict)
    """Sessions archived whose facts could not be decoded: id -> (user id, reason)."""


class SqlArchive:
    """Archived sessions in a SQL database; the archive of every deployment."""

    def __init__(self, engine: AsyncEngine, *, auto_migrate: bool = False) -> None:
        self.engine = engine
        self.name = engine.dialect.name
        # The embedded SQLite file has one user and no operator to run a migration step;
        # any other database is migrated on purpose unless the settings opt in.
        self._migrates = auto_migrate or is_sqlite(engine)
        self._reader = engine.execution_options(**{READ_ONLY_OPTION: True})
        # SQLite has one writer at a time anyway; queueing in-process writers here spares
        # them SQLite's sleep-and-retry busy handler. Other processes still wait on the
        # file lock, so this lock is an optimisation, not what makes writes safe.
        self._write_lock = asyncio.Lock() if is_sqlite(engine) else None

    async def initialize(self) -> None:
        """SQLite (or ``auto_migrate``): migrate to the newest schema, creating it if absent.
        Otherwise check the revision, one query, and refuse a schema that is absent or
        behind (SchemaOutdatedError: run ``fiml db upgrade``) or ahead (SchemaNewerError)."""
        with unavailable_as_error(self.name):
            if self._migrates:
                await upgrade_schema(self.engine)
            else:
                await check_schema(self.engine)

    async def close(self) -> None:
        """Dispose of the connection pool."""
        await self.engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with unavailable_as_error(self.name):
            async with self._write_lock or nullcontext(), self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with unavailable_as_error(self.name):
            async with self._reader.connect() as conn:
                yield conn

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def archive_in_place(
        self,
        session_ids: Sequence[UUID],
        *,
        now: datetime,
        end_now: bool = False,
        record_facts: bool = False,
    ) -> ArchivedInPlace:
        """Mark sessions archived, in one transaction with their analytics facts; each is
        counted by exactly one caller. Only expired (or closed) sessions, unless ``end_now``
        (``archive_session``), which also ends them now. A session whose facts cannot be
        decoded is archived all the same and reported, so that the caller quarantines it.
        """
        outcome = ArchivedInPlace()
        if not session_ids:
            return outcome
        condition = and_(S.c.id.in_(list(session_ids)), S.c.archived_at.is_(None))
        values: dict[str, Any] = {"archived_at": now, "version": S.c.version + 1}
        if end_now:
            values["expires_at"] = case((S.c.expires_at > now, now), else_=S.c.expires_at)
        else:
            condition = and_(condition, S.c.expires_at <= now)
        stmt = update(S).where(condition).values(**values).returning(*_FACT_COLUMNS)
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            outcome.archived = len(rows)
            if record_facts:
                facts = []
                for row in rows:
                    try:
                        facts.append(_facts_from_row(row))
                    except UNDECODABLE as exc:
                        outcome.unreadable[row["id"]] = (row["user_id"], failure_reason(exc))
                outcome.metrics_recorded = await insert_missing_facts(conn, facts, recorded_at=now)
            kept = [row["id"] for row in rows if row["id"] not in outcome.unreadable]
            await release(conn, kept)
        return outcome

    async def import_archived(
        self, sessions: Sequence[Session], *, archived_at: datetime, record_facts: bool = False
    ) -> tuple[int, int]:
        """Copy sessions from the active tier into the archive; re-copying adds nothing.

        One transaction inserts the sessions, their queries and (with ``record_facts``) the
        analytics facts of the new ones, and takes them out of the quarantine. Returns how
        many sessions this call inserted, so concurrent archivers of the same sessions count
        each one once between them, and how many sessions' facts it recorded.
        """
        if not sessions:
            return 0, 0
        rows = []
        for session in sessions:
            values = values_of(session)
            values["archived_at"] = values["archived_at"] or archived_at
            rows.append(values)
        # One statement executed for many rows: SQLAlchemy compiles it once (cached) and
        # sends the rows in multi-row batches, where a ``.values(rows)`` statement would be
        # compiled anew, with a bind parameter per value, for every batch.
        stmt = self._insert(S).on_conflict_do_nothing().returning(S.c.id)
        recorded = 0
        async with self._write() as conn:
            new_ids = set((await conn.execute(stmt, rows)).scalars())
            query_rows = [
                query_values(s.id, i + 1, q)
                for s in sessions
                if s.id in new_ids
                for i, q in enumerate(s.state.history.queries)
            ]
            for query_batch in _chunks(query_rows, _QUERY_ROWS_PER_CALL):
                await conn.execute(insert(Q), list(query_batch))
            if record_facts:
                facts = [
                    SessionFacts.from_session(
                        s.model_copy(update={"archived_at": s.archived_at or archived_at}),
                        now=archived_at,
                    )
                    for s in sessions
                    if s.id in new_ids
                ]
                recorded = await insert_missing_facts(conn, facts, recorded_at=archived_at)
            await release(conn, [s.id for s in sessions])
        return len(new_ids), recorded

    async def quarantine(
        self, failures: dict[UUID, tuple[str | None, str]], *, now: datetime
    ) -> None:
        """Record sessions archival could not move (id -> (user id, reason))."""
        async with self._write() as conn:
            await record_quarantined(conn, failures, now=now)

    async def list_quarantined(
        self, *, limit: int, user_id: str | None = None
    ) -> list[QuarantinedSession]:
        """The quarantined sessions, longest-failing first."""
        async with self._read() as conn:
            return await list_quarantined(conn, limit=limit, user_id=user_id)

    async def delete_archived_before(self, cutoff: datetime, *, batch_size: int = 1000) -> int:
        """Delete archived sessions archived before ``cutoff``, in batches; quarantined
        sessions are kept until an operator deletes them."""
        quarantined = select(QUARANTINE.c.session_id)
        deleted = 0
        while True:
            async with self._write() as conn:
                ids = list(
                    (
                        await conn.execute(
                            select(S.c.id)
                            .where(
                                S.c.archived_at.is_not(None),
                                S.c.archived_at < cutoff,
                                S.c.id.not_in(quarantined),
                            )
                            .limit(batch_size)
                        )
                    ).scalars()
                )
                if not ids:
                    return deleted
                await conn.execute(delete(Q).where(Q.c.session_id.in_(ids)))
                result = await conn.execute(delete(S).where(S.c.id.in_(ids)))
                deleted += int(result.rowcount)

    async def count_sessions(self, *, archived: bool | None = None) -> int:
        """How many sessions are stored (all, only archived, or only unarchived)."""
        stmt = select(func.count()).select_from(S)
        if archived is not None:
            stmt = stmt.where(
                S.c.archived_at.is_not(None) if archived else S.c.archived_at.is_(None)
            )
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())
