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
import functools
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.sessions.backends.fields import by_name, values_of
from fiml.sessions.backends.sql_events import copy_events, delete_events
from fiml.sessions.backends.sql_faults import unavailable_as_error
from fiml.sessions.backends.sql_partitions import (
    ARCHIVE_MONTH,
    archive_month,
    archive_partitions,
    drop_partition,
    ensure_partitions,
    existing_ids,
    is_partitioned,
    months_from,
    move_to_archive,
    queries_table,
    sessions_table,
)
from fiml.sessions.backends.sql_rows import Q, S, decoded, query_values, selected
from fiml.sessions.backends.sql_search import T as TERMS
from fiml.sessions.backends.sql_search import index_session
from fiml.sessions.db import (
    READ_ONLY_OPTION,
    STATEMENT_SNAPSHOT_OPTION,
    create_thread_engine,
    is_sqlite,
)
from fiml.sessions.events import SessionEvent
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
from fiml.sessions.sql_dialects import dialect_insert

__all__ = ["ArchivedInPlace", "SqlArchive"]

T = TypeVar("T")
P = TypeVar("P")

_QUERY_ROWS_PER_CALL = 5000
_SERIALIZATION_FAILURE = "40001"
_WRITE_ATTEMPTS = 3
"""A write that PostgreSQL fails because the row it locks was moved to another partition
meanwhile (archived: SQLSTATE 40001) is run again, whole, in a new transaction; it then
finds the session archived, as it would have without partitions."""
_FACT_FIELDS = tuple(by_name[name] for name in FACT_SOURCES)
"""What ``SessionFacts.build`` takes of a session archived in place."""
_FACT_COLUMNS = selected(_FACT_FIELDS)


def moved_by_archival(exc: DBAPIError) -> bool:
    """Whether PostgreSQL failed a statement because a row it updates or locks was moved to
    another partition meanwhile (archived): the statement took no effect."""
    return getattr(exc.orig, "sqlstate", None) == _SERIALIZATION_FAILURE


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
    facts: list[SessionFacts] = field(default_factory=list)
    """The facts of the sessions this call archived (their type, how they ended), for the
    operational metrics: of every one that decodes."""
    unreadable: dict[UUID, tuple[str | None, str]] = field(default_factory=dict)
    """Sessions archived whose facts could not be decoded: id -> (user id, reason)."""


def _in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return work(conn)


def _on_connection(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return work(conn)


def _settle(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if not future.done():  # its awaiting task may have been cancelled meanwhile
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class _Worker:
    """A thread running the functions given to it one at a time, in order, each handing
    its outcome back to the awaiting event loop: one crossing each way per function."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, work = job
            try:
                outcome, failed = work(), False
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome, failed = exc, True
            try:
                loop.call_soon_threadsafe(_settle, future, outcome, failed)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                continue

    async def run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, work))
        return await future

    def stop(self) -> None:
        """Stop after the functions already given, and wait for it."""
        self._jobs.put(None)
        self._thread.join()


class _DatabaseThread:
    """Where SQLite statements run: threads of the backend's own, on a ``sqlite3`` engine
    (:func:`~fiml.sessions.db.create_thread_engine`) for the async engine's file.

    A store operation crosses to a thread once and back, whatever it runs there. Writes
    have a thread, reads another: a write waiting for another process's lock holds up no
    read (WAL: readers never wait for a writer).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.snapshot_reader = engine.execution_options(**{READ_ONLY_OPTION: True})
        self.reader = engine.execution_options(**{STATEMENT_SNAPSHOT_OPTION: True})
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self._writer is None:
            self._writer = _Worker("fiml-sqlite-writer")
        return await self._writer.run(lambda: _in_transaction(self.engine, work))

    async def read(self, work: Callable[[Connection], T], *, snapshot: bool) -> T:
        if self._reader is None:
            self._reader = _Worker("fiml-sqlite-reader")
        engine = self.snapshot_reader if snapshot else self.reader
        return await self._reader.run(lambda: _on_connection(engine, work))

    def close(self) -> None:
        """Stop the threads (after what they are running) and close their connections."""
        for worker in (self._writer, self._reader):
            if worker is not None:
                worker.stop()
        self._writer = self._reader = None
        self.engine.dispose()


class SqlArchive:
    """Archived sessions in a SQL database; the archive of every deployment.

    Each operation's SQL is one synchronous function of a SQLAlchemy ``Connection``, run
    whole in one place: on SQLite in the backend's database thread (:class:`_DatabaseThread`),
    on PostgreSQL through ``AsyncConnection.run_sync`` on the async engine (asyncpg).
    """

    def __init__(
        self, engine: AsyncEngine, *, auto_migrate: bool = False, holds_active: bool = True
    ) -> None:
        self.engine = engine
        self.name = engine.dialect.name
        # Whether active sessions live here (not on Redis): on PostgreSQL a read by id then
        # looks in the active partition first, else among the months at once, one statement.
        # Either way it finds any session: this only orders the lookups.
        self.holds_active = holds_active
        # The embedded SQLite file has one user and no operator to run a migration step;
        # any other database is migrated on purpose unless the settings opt in.
        self._migrates = auto_migrate or is_sqlite(engine)
        # PostgreSQL: reads whose statements need not share a snapshot run in autocommit
        # mode, sparing the BEGIN and ROLLBACK round trips around them.
        self._snapshot_reader = engine.execution_options(**{READ_ONLY_OPTION: True})
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        # SQLite has one writer at a time anyway; queueing in-process writers here spares
        # them SQLite's sleep-and-retry busy handler. Other processes still wait on the
        # file lock, so this lock is an optimisation, not what makes writes safe.
        self._write_lock = asyncio.Lock() if is_sqlite(engine) else None
        self._thread: _DatabaseThread | None = None

    async def initialize(self) -> None:
        """SQLite (or ``auto_migrate``): migrate to the newest schema, creating it if absent.
        Otherwise check the revision, one query, and refuse a schema that is absent or
        behind (SchemaOutdatedError: run ``fiml db upgrade``) or ahead (SchemaNewerError)."""
        with unavailable_as_error(self.name):
            if self._migrates:
                await upgrade_schema(self.engine)
            else:
                await check_schema(self.engine)
            if is_sqlite(self.engine):
                await self._database_thread()

    async def close(self) -> None:
        """Stop the database thread and dispose of the connection pools."""
        if self._thread is not None:
            self._thread.close()
        await self.engine.dispose()

    @property
    def sync_engine(self) -> Engine:
        """The synchronous engine this backend's statements run on: on SQLite its database
        thread's (once initialized), on PostgreSQL the async engine's ``sync_engine``."""
        if not is_sqlite(self.engine):
            return self.engine.sync_engine
        if self._thread is None:
            raise RuntimeError("the SQLite backend is not initialized")
        return self._thread.engine

    async def _database_thread(self) -> _DatabaseThread:
        """The SQLite database thread, its engine waiting for the file lock as long as the
        async engine's does (its busy timeout, read from one of its connections)."""
        if self._thread is None:
            async with self.engine.connect() as conn:
                timeout_ms = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
            engine = create_thread_engine(
                self.engine.url, busy_timeout=int(timeout_ms) / 1000, echo=bool(self.engine.echo)
            )
            if self._thread is None:
                self._thread = _DatabaseThread(engine)
            else:  # another task built it while this one read the timeout
                engine.dispose()
        return self._thread

    async def _writing(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one write transaction (on SQLite behind the write lock, from its
        first statement holding the file's write lock: ``BEGIN IMMEDIATE``)."""
        with unavailable_as_error(self.name):
            if self._write_lock is None:
                return await self._write_retried(work)
            thread = await self._database_thread()
            async with self._write_lock:
                return await thread.write(work)

    async def _write_retried(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                return await self._on_postgres(self.engine, work, transaction=True)
            except DBAPIError as exc:
                if not moved_by_archival(exc) or attempt == _WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _reading(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """``work`` on a read-only connection; its statements see one snapshot with
        ``snapshot`` (a transaction), otherwise each statement its own (no transaction)."""
        with unavailable_as_error(self.name):
            if self._write_lock is None:
                reader = self._snapshot_reader if snapshot else self._reader
                return await self._on_postgres(reader, work, transaction=False)
            thread = await self._database_thread()
            return await thread.read(work, snapshot=snapshot)

    async def _read_then_write_once(
        self,
        read: Callable[[Connection], P],
        write: Callable[[Connection, P], T],
    ) -> tuple[P, T]:
        """PostgreSQL, on one connection in autocommit mode: ``read``, then ``write`` (one
        statement that writes) given what ``read`` returned.

        A connection found dead by the read is replaced and the read run again, as any
        read is (:meth:`_on_postgres`); so the write is sent on a connection that has just
        answered, and never twice: a connection lost under it may have committed it.
        """
        with unavailable_as_error(self.name):
            for attempt in range(2):
                async with self._reader.connect() as conn:
                    try:
                        found = await conn.run_sync(read)
                    except DBAPIError as exc:
                        if attempt or not exc.connection_invalidated:
                            raise
                        continue
                    return found, await conn.run_sync(write, found)
            raise AssertionError("unreachable: the second attempt returns or raises")

    @staticmethod
    async def _on_postgres(
        engine: AsyncEngine,
        work: Callable[[Connection], T],
        *,
        transaction: bool,
    ) -> T:
        """``work`` on a pooled connection (in a transaction if ``transaction``; else as
        ``engine`` begins one, if at all, and ends it unfinished), run again
        once on a new connection if the first was found dead before anything could have
        been committed.

        Pooled connections are not pinged on checkout (three round trips each on asyncpg):
        a connection the server dropped fails its first statement instead, SQLAlchemy marks
        it invalid and recycles the pool's older connections (its optimistic disconnect
        handling). Nothing of a transaction is committed before its COMMIT, and a read
        commits nothing, so such a failure inside ``work`` is retried; one at COMMIT is
        not: it may have taken effect (nor is an autocommit write's, which
        :meth:`_read_then_write_once` sends outside this).
        """
        retried = False
        while True:
            async with engine.connect() as conn:
                trans = await conn.begin() if transaction else None
                try:
                    outcome = await conn.run_sync(work)
                except DBAPIError as exc:
                    if retried or not exc.connection_invalidated:
                        raise
                    retried = True
                    continue
                if trans is not None:
                    await trans.commit()
                return outcome

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
        if not session_ids:
            return ArchivedInPlace()
        condition = and_(S.c.id.in_(list(session_ids)), S.c.archived_at.is_(None))
        values: dict[str, Any] = {"archived_at": now, "version": S.c.version + 1}
        if end_now:
            values["expires_at"] = case((S.c.expires_at > now, now), else_=S.c.expires_at)
        else:
            condition = and_(condition, S.c.expires_at <= now)
        stmt = update(S).where(condition).values(**values).returning(*_FACT_COLUMNS)

        def archive(conn: Connection) -> ArchivedInPlace:
            outcome = ArchivedInPlace()
            rows = conn.execute(stmt).mappings().all()
            outcome.archived = len(rows)
            for row in rows:
                try:
                    outcome.facts.append(_facts_from_row(row))
                except UNDECODABLE as exc:
                    if record_facts:  # analytics needs them: the caller quarantines it
                        outcome.unreadable[row["id"]] = (row["user_id"], failure_reason(exc))
            if record_facts:
                outcome.metrics_recorded = insert_missing_facts(
                    conn, outcome.facts, recorded_at=now
                )
            release(conn, [row["id"] for row in rows if row["id"] not in outcome.unreadable])
            if is_partitioned(conn):
                move_to_archive(conn, [row["id"] for row in rows], now)
            return outcome

        return await self._writing(archive)

    async def import_archived(
        self,
        sessions: Sequence[Session],
        *,
        archived_at: datetime,
        record_facts: bool = False,
        events: dict[UUID, list[SessionEvent]] | None = None,
    ) -> tuple[int, int]:
        """Copy sessions, and their timelines (``events``), from the active tier into the
        archive; re-copying adds nothing.

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

        def copy(conn: Connection) -> tuple[int, int]:
            # One statement executed for many rows: SQLAlchemy compiles it once (cached) and
            # sends the rows in multi-row batches, where a ``.values(rows)`` statement would
            # be compiled anew, with a bind parameter per value, for every batch.
            sessions_into, queries_into, months = S, Q, {}
            todo = rows
            if is_partitioned(conn):  # straight into the archive month's partition
                sessions_into, queries_into = sessions_table, queries_table
                # The key holds per partition only: a session copied before, in another
                # month, is found by its id.
                stored = existing_ids(conn, [row["id"] for row in rows])
                todo = [row for row in rows if row["id"] not in stored]
                months = {row["id"]: archive_month(row["archived_at"]) for row in todo}
                for row in todo:
                    row[ARCHIVE_MONTH] = months[row["id"]]
            stmt = dialect_insert(conn.dialect.name, sessions_into).on_conflict_do_nothing()
            new_ids: set[UUID] = set()
            if todo:  # (an empty list would run the statement once, with no row)
                new_ids = set(conn.execute(stmt.returning(sessions_into.c.id), todo).scalars())
            query_rows = [
                query_values(s.id, i + 1, q)
                for s in sessions
                if s.id in new_ids
                for i, q in enumerate(s.state.history.queries)
            ]
            if months:
                for query_row in query_rows:
                    query_row[ARCHIVE_MONTH] = months[query_row["session_id"]]
            for query_batch in _chunks(query_rows, _QUERY_ROWS_PER_CALL):
                conn.execute(insert(queries_into), list(query_batch))
            for s in sessions:
                if s.id in new_ids:
                    index_session(conn, s)
            copy_events(conn, {sid: e for sid, e in (events or {}).items() if sid in new_ids})
            recorded = 0
            if record_facts:
                facts = [
                    SessionFacts.from_session(
                        s.model_copy(update={"archived_at": s.archived_at or archived_at}),
                        now=archived_at,
                    )
                    for s in sessions
                    if s.id in new_ids
                ]
                recorded = insert_missing_facts(conn, facts, recorded_at=archived_at)
            release(conn, [s.id for s in sessions])
            return len(new_ids), recorded

        return await self._writing(copy)

    async def quarantine(
        self, failures: dict[UUID, tuple[str | None, str]], *, now: datetime
    ) -> None:
        """Record sessions archival could not move (id -> (user id, reason))."""
        await self._writing(lambda conn: record_quarantined(conn, failures, now=now))

    async def list_quarantined(
        self, *, limit: int, user_id: str | None = None
    ) -> list[QuarantinedSession]:
        """The quarantined sessions, longest-failing first."""
        return await self._reading(
            lambda conn: list_quarantined(conn, limit=limit, user_id=user_id)
        )

    async def ensure_partitions(self, *, now: datetime) -> int:
        """PostgreSQL: create the archive's monthly partitions for the month of ``now`` and
        the two after it that are missing; returns how many. SQLite: nothing, 0."""
        if is_sqlite(self.engine):
            return 0
        return await self._writing(lambda conn: ensure_partitions(conn, months_from(now)))

    async def delete_archived_before(self, cutoff: datetime, *, batch_size: int = 1000) -> int:
        """Delete archived sessions archived before ``cutoff``; quarantined sessions are kept
        until an operator deletes them. On PostgreSQL each monthly partition wholly before
        ``cutoff`` is dropped (a transaction each) unless it holds a quarantined session;
        what remains (the boundary month, the DEFAULT partition, months kept for their
        quarantined sessions; on SQLite everything) is deleted in batches of
        ``batch_size`` sessions, a transaction each."""
        deleted = 0
        if not is_sqlite(self.engine):
            months = await self._reading(lambda conn: archive_partitions(conn, cutoff))
            for month in months:
                dropped = await self._writing(functools.partial(drop_partition, month=month))
                deleted += dropped.sessions if dropped is not None else 0
        return deleted + await self._delete_in_batches(cutoff, batch_size)

    async def _delete_in_batches(self, cutoff: datetime, batch_size: int) -> int:
        quarantined = select(QUARANTINE.c.session_id)
        due = (
            select(S.c.id)
            .where(
                S.c.archived_at.is_not(None),
                S.c.archived_at < cutoff,
                S.c.id.not_in(quarantined),
            )
            .limit(batch_size)
        )

        def delete_batch(conn: Connection) -> int | None:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return None
            conn.execute(delete(Q).where(Q.c.session_id.in_(ids)))
            delete_events(conn, ids)
            # No foreign key cascades on the partitioned PostgreSQL archive: the terms go here.
            conn.execute(delete(TERMS).where(TERMS.c.session_id.in_(ids)))
            return int(conn.execute(delete(S).where(S.c.id.in_(ids))).rowcount)

        deleted = 0
        while (removed := await self._writing(delete_batch)) is not None:
            deleted += removed
        return deleted

    async def count_sessions(self, *, archived: bool | None = None) -> int:
        """How many sessions are stored (all, only archived, or only unarchived)."""
        stmt = select(func.count()).select_from(S)
        if archived is not None:
            stmt = stmt.where(
                S.c.archived_at.is_not(None) if archived else S.c.archived_at.is_(None)
            )
        return await self._reading(lambda conn: int(conn.execute(stmt).scalar_one()))
