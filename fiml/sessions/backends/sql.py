"""SQL backend on SQLAlchemy 2 async: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Every write is one transaction that locks the session's row first (``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent writers in any number
of processes queue instead of overwriting each other. Queries are rows of their own:
tracking one is an insert plus an update of the session's counters, whatever the history's
length. Database faults are storage errors naming the dialect (:func:`unavailable_as_error`):
a database that cannot be reached, times out, has no free connection or fails a read is a
:class:`~fiml.core.errors.StorageUnavailableError`; a full disk or a read-only database is
a :class:`~fiml.core.errors.StorageRefusedError`; every other database error passes
unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from typing import cast as type_cast
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import Row, Table, Text, and_, case, cast, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fiml.core.errors import (
    ContextValueError,
    CorruptRecordError,
    InvalidTTLError,
    QueryLimitExceededError,
    SessionArchivedError,
    SessionClosedError,
    SessionConflictError,
    SessionExpiredError,
    SessionNotFoundError,
    StorageRefusedError,
    StorageUnavailableError,
)
from fiml.sessions.backends.base import (
    LIST_SIZES,
    ExportedSessions,
    HistoryCounters,
    ListChange,
    ListCursor,
    SessionChanges,
    WriteLimits,
    list_size_error,
)
from fiml.sessions.backends.sql_metrics import SqlMetrics
from fiml.sessions.db import (
    READ_ONLY_OPTION,
    TOO_MANY_CONNECTIONS,
    QueryRow,
    SessionRecord,
    is_sqlite,
)
from fiml.sessions.metrics import SessionFacts, insert_missing_facts
from fiml.sessions.models import (
    MAX_STATE_KEYS,
    STATE_SECTIONS,
    QueryRecord,
    Session,
    SessionStatus,
    SessionSummary,
    queries_from_rows,
    session_from_store,
    utcnow,
)
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

__all__ = ["SqlBackend", "unavailable_as_error"]

S = type_cast(Table, SessionRecord.__table__)
Q = type_cast(Table, QueryRow.__table__)
_SECTION_COLUMNS = {
    "context": "context",
    "preferences": "preferences",
    "intermediate_results": "intermediate_results",
    "metadata": "metadata",
}
_SUMMARY_COLUMNS = [
    S.c.id,
    S.c.user_id,
    S.c.session_type,
    # JSON as text, decoded row by row: one damaged row must not break a whole listing.
    cast(S.c.assets, Text).label("assets"),
    cast(S.c.tags, Text).label("tags"),
    S.c.created_at,
    S.c.expires_at,
    S.c.last_accessed_at,
    S.c.closed_at,
    S.c.archived_at,
    S.c.total_queries,
]
_SUMMARY_NAMES = [column.name for column in _SUMMARY_COLUMNS]
_QUERY_ROWS_PER_CALL = 5000


# Faults of a database that is up but will not take the write: retrying cannot help.
_REFUSED = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_READONLY": "the database file is read-only",
    "53100": "the disk is full",
    "25006": "the database is read-only (a read-only transaction, or a standby)",
}
# Faults that may clear on their own (a lock released, a disk remounted, a slot freed).
_UNAVAILABLE = {
    "SQLITE_BUSY": "the write lock was held past FIML_DATABASE_TIMEOUT_SECONDS",
    "SQLITE_LOCKED": "the write lock was held past FIML_DATABASE_TIMEOUT_SECONDS",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_IOERR": "the disk failed a read or a write",
    TOO_MANY_CONNECTIONS: "every connection slot was taken (too many clients) for "
    "FIML_DATABASE_TIMEOUT_SECONDS; see FIML_DATABASE_POOL_SIZE and FIML_DATABASE_MAX_OVERFLOW",
}
_NO_FREE_CONNECTION = (
    "no free connection in the pool within FIML_DATABASE_TIMEOUT_SECONDS "
    "(FIML_DATABASE_POOL_SIZE + FIML_DATABASE_MAX_OVERFLOW connections, all busy)"
)


def _fault_code(error: BaseException | None) -> str | None:
    """SQLite's primary result code name (``SQLITE_IOERR`` for ``SQLITE_IOERR_WRITE``), or
    PostgreSQL's SQLSTATE."""
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        return "_".join(name.split("_", 2)[:2])
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


@contextmanager
def unavailable_as_error(backend: str) -> Iterator[None]:
    """Database faults become storage errors naming ``backend``; other database errors
    (constraint violations, bad SQL: bugs) pass unchanged.

    StorageUnavailableError: unreachable, dropped connection, timed out, no free pooled
    connection, no free server slot, SQLite's lock held too long, a file that cannot be
    opened, an I/O error. StorageRefusedError: a full disk, a read-only database.
    """
    try:
        yield
    except DBAPIError as exc:
        code = _fault_code(exc.orig)
        detail = str(exc.orig) or type(exc.orig).__name__
        if code in _REFUSED:
            raise StorageRefusedError(backend, f"{_REFUSED[code]} ({detail})") from exc
        if code in _UNAVAILABLE:
            raise StorageUnavailableError(backend, f"{_UNAVAILABLE[code]} ({detail})") from exc
        if exc.connection_invalidated:
            raise StorageUnavailableError(backend, detail) from exc
        raise
    except PoolTimeoutError as exc:  # every pooled connection stayed checked out
        raise StorageUnavailableError(backend, _NO_FREE_CONNECTION) from exc
    except TimeoutError as exc:  # a statement or a connection attempt past the timeout
        raise StorageUnavailableError(
            backend, "no reply within FIML_DATABASE_TIMEOUT_SECONDS"
        ) from exc
    except OSError as exc:  # refused or reset while connecting
        raise StorageUnavailableError(backend, str(exc) or type(exc).__name__) from exc


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _session_values(session: Session) -> dict[str, Any]:
    history = session.state.history
    state = session.state
    return {
        "id": session.id,
        "user_id": session.user_id,
        "session_type": session.type.value,
        "assets": list(session.assets),
        "tags": list(session.tags),
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "last_accessed_at": session.last_accessed_at,
        "closed_at": session.closed_at,
        "archived_at": session.archived_at,
        "version": session.version,
        "total_queries": history.total_queries,
        "cache_hits": history.cache_hits,
        "query_type_counts": dict(history.query_type_counts),
        "first_query_at": history.first_query_at,
        "last_query_at": history.last_query_at,
        "context": state.context,
        "preferences": state.preferences,
        "intermediate_results": state.intermediate_results,
        "metadata": state.metadata,
    }


def _query_values(session_id: UUID, seq: int, query: QueryRecord) -> dict[str, Any]:
    return {
        "id": query.id,
        "session_id": session_id,
        "seq": seq,
        "timestamp": query.timestamp,
        "query_type": query.query_type,
        "parameters": query.parameters,
        "result_summary": query.result_summary,
        "execution_time_ms": query.execution_time_ms,
        "cache_hit": query.cache_hit,
    }


def _session_from_row(row: Row[Any], queries: list[QueryRecord]) -> Session:
    return session_from_store(
        {
            "id": row.id,
            "user_id": row.user_id,
            "type": row.session_type,
            "assets": list(row.assets),
            "tags": list(row.tags or []),
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "last_accessed_at": row.last_accessed_at,
            "closed_at": row.closed_at,
            "archived_at": row.archived_at,
            "version": row.version,
            "state": {
                "context": dict(row.context or {}),
                "preferences": dict(row.preferences or {}),
                "intermediate_results": dict(row.intermediate_results or {}),
                "metadata": dict(row.metadata or {}),
                "history": {
                    "queries": queries,
                    "total_queries": row.total_queries,
                    "cache_hits": row.cache_hits,
                    "query_type_counts": dict(row.query_type_counts or {}),
                    "first_query_at": row.first_query_at,
                    "last_query_at": row.last_query_at,
                },
            },
        }
    )


_SUMMARIES = TypeAdapter(list[SessionSummary])


def _summary_fields(row: Any, now: datetime) -> dict[str, Any]:
    expired = row.expires_at <= now
    if row.archived_at is not None:
        status = SessionStatus.ARCHIVED
    elif row.closed_at is not None:
        status = SessionStatus.CLOSED
    else:
        status = SessionStatus.EXPIRED if expired else SessionStatus.ACTIVE
    return {
        "id": row.id,
        "user_id": row.user_id,
        "type": row.session_type,
        "assets": row.assets,
        "tags": row.tags or [],
        "status": status,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_accessed_at": row.last_accessed_at,
        "closed_at": row.closed_at,
        "archived_at": row.archived_at,
        "total_queries": row.total_queries,
        "is_expired": expired,
        "is_archived": row.archived_at is not None,
    }


_SUMMARY = TypeAdapter(SessionSummary)
logger = logging.getLogger("fiml.sessions.sql")


def _skipped(session_id: Any, exc: BaseException) -> None:
    logger.warning(
        "listing skips a corrupt session",
        extra={
            "event": "session.corrupt",
            "session_id": str(session_id),
            "reason": failure_reason(exc),
        },
    )


def summaries_from_rows(rows: Iterable[Any], now: datetime) -> list[SessionSummary]:
    """Listing entries from ``sessions`` rows, or objects with the same attributes (no
    history is read), validated in one pydantic-core call; should that fail, row by row,
    so that a damaged session is left out (and logged) instead of failing the listing."""
    fields = [_summary_fields(row, now) for row in rows]
    try:
        return _SUMMARIES.validate_python(fields)
    except ValueError:
        pass
    summaries = []
    for entry in fields:
        try:
            summaries.append(_SUMMARY.validate_python(entry))
        except ValueError as exc:
            _skipped(entry["id"], exc)
    return summaries


def _decoded_listing_rows(rows: Iterable[Any]) -> list[SimpleNamespace]:
    """Rows of ``_SUMMARY_COLUMNS`` with their JSON text decoded; damaged ones left out."""
    decoded = []
    for row in rows:
        values = SimpleNamespace(**dict(zip(_SUMMARY_NAMES, row, strict=True)))
        try:
            values.assets = json.loads(values.assets)
            values.tags = json.loads(values.tags) if values.tags else []
        except UNDECODABLE as exc:
            _skipped(values.id, exc)
            continue
        decoded.append(values)
    return decoded


def check_writable(session_id: UUID, row: Any, now: datetime) -> None:
    """Raise the error that says why this session row no longer accepts writes."""
    if row.archived_at is not None:
        raise SessionArchivedError(session_id)
    if row.closed_at is not None:
        raise SessionClosedError(session_id)
    if row.expires_at <= now:
        raise SessionExpiredError(session_id)


def new_expiry(
    current: datetime, changes: SessionChanges, now: datetime, max_ttl: timedelta
) -> datetime | None:
    """The expiry a write sets, checked against the maximum TTL; None if unchanged."""
    hours = max_ttl.total_seconds() / 3600
    if changes.extend_by is not None:
        target = current + changes.extend_by
        if target - now > max_ttl:
            room = max((max_ttl - (current - now)).total_seconds() / 3600, 0.0)
            raise InvalidTTLError(
                "hours", changes.extend_by.total_seconds() / 3600, minimum=0, maximum=room
            )
        return target
    if changes.expires_at is not None and changes.expires_at != current:
        if changes.expires_at <= now or changes.expires_at - now > max_ttl:
            remaining = (changes.expires_at - now).total_seconds() / 3600
            raise InvalidTTLError("ttl_hours", round(remaining, 6), minimum=0, maximum=hours)
        return changes.expires_at
    return None


@dataclass(slots=True)
class ArchivedInPlace:
    """What :meth:`SqlBackend.archive_in_place` did."""

    archived: int = 0
    metrics_recorded: int = 0
    unreadable: dict[UUID, tuple[str | None, str]] = field(default_factory=dict)
    """Sessions archived whose facts could not be decoded: id -> (user id, reason)."""


_FACT_COLUMNS = (
    S.c.id,
    S.c.user_id,
    S.c.session_type,
    S.c.created_at,
    S.c.expires_at,
    S.c.last_accessed_at,
    S.c.closed_at,
    S.c.archived_at,
    S.c.total_queries,
    S.c.cache_hits,
    # JSON as text, decoded row by row: one damaged row must not stop a whole batch.
    cast(S.c.assets, Text).label("assets"),
    cast(S.c.tags, Text).label("tags"),
    cast(S.c.query_type_counts, Text).label("query_type_counts"),
)


def _facts_from_row(row: Any) -> SessionFacts:
    return SessionFacts.build(
        session_id=row.id,
        user_id=row.user_id,
        session_type=row.session_type,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_accessed_at=row.last_accessed_at,
        closed_at=row.closed_at,
        archived_at=row.archived_at,
        total_queries=row.total_queries,
        cache_hits=row.cache_hits,
        assets=json.loads(row.assets) if row.assets else [],
        tags=json.loads(row.tags) if row.tags else [],
        query_type_counts=json.loads(row.query_type_counts) if row.query_type_counts else {},
        now=row.archived_at,
    )


def merged_list(name: str, stored: list[str], change: ListChange) -> list[str]:
    """``change`` merged into the ``stored`` list (the rule is :class:`ListChange`'s);
    InvalidInputError naming the list if the result breaks its size limits."""
    removed = set(change.removed)
    merged = [] if change.replace else [x for x in stored if x not in removed]
    present = set(merged)
    merged += [x for x in dict.fromkeys(change.added) if x not in present]
    low, high = LIST_SIZES[name]
    if not low <= len(merged) <= high:
        raise list_size_error(name, len(merged))
    return merged


class SqlBackend(SqlMetrics):
    """Sessions in a SQL database; also the archive of every deployment (its analytics
    methods are :class:`~fiml.sessions.backends.sql_metrics.SqlMetrics`')."""

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

    async def insert(self, session: Session) -> None:
        """Store a new session and any queries it already holds."""
        async with self._write() as conn:
            await conn.execute(insert(S), [_session_values(session)])
            queries = session.state.history.queries
            if queries:
                start = session.state.history.total_queries - len(queries) + 1
                rows = [_query_values(session.id, start + i, q) for i, q in enumerate(queries)]
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
            row = (await conn.execute(select(S).where(S.c.id == session_id))).first()
            if row is None:
                return None
            stmt = select(Q).where(Q.c.session_id == session_id)
            if recent_queries is None:
                rows = (await conn.execute(stmt.order_by(Q.c.seq))).all()
            elif recent_queries > 0:
                lowest = row.total_queries - recent_queries
                stmt = stmt.where(Q.c.seq > lowest).order_by(Q.c.seq)
                rows = (await conn.execute(stmt)).all()
            else:
                rows = []
        return _session_from_row(row, queries_from_rows(rows))

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
        """Apply one write atomically under the session's row lock."""
        async with self._write() as conn:
            row = (
                await conn.execute(select(S).where(S.c.id == session_id).with_for_update())
            ).first()
            if row is None:
                raise SessionNotFoundError(session_id)
            check_writable(session_id, row, now)
            if changes.expected_version is not None and changes.expected_version != row.version:
                raise SessionConflictError(
                    session_id,
                    expected_version=changes.expected_version,
                    actual_version=row.version,
                )
            values: dict[str, Any] = {"version": row.version + 1}
            total, hits = await self._add_queries(conn, row, changes.new_queries, limits, values)
            self._merge_sections(row, changes, values)
            expiry = new_expiry(row.expires_at, changes, now, limits.max_ttl)
            if expiry is not None:
                values["expires_at"] = expiry
            if changes.assets is not None:
                values["assets"] = merged_list("assets", row.assets, changes.assets)
            if changes.tags is not None:
                values["tags"] = merged_list("tags", row.tags or [], changes.tags)
            if changes.close:
                values["closed_at"] = now
            if changes.close or changes.end_now:
                values["expires_at"] = min(values.get("expires_at", row.expires_at), now)
            values["last_accessed_at"] = max(row.last_accessed_at, now)
            await conn.execute(update(S).where(S.c.id == session_id).values(**values))
        return HistoryCounters(
            total_queries=total,
            cache_hits=hits,
            version=values["version"],
            added_queries=total - row.total_queries,
        )

    async def _add_queries(
        self,
        conn: AsyncConnection,
        row: Row[Any],
        queries: list[QueryRecord],
        limits: WriteLimits,
        values: dict[str, Any],
    ) -> tuple[int, int]:
        if not queries:
            return row.total_queries, row.cache_hits
        ids = [q.id for q in queries]
        seen = set(
            (
                await conn.execute(select(Q.c.id).where(Q.c.session_id == row.id, Q.c.id.in_(ids)))
            ).scalars()
        )
        fresh = [q for q in dict((q.id, q) for q in queries).values() if q.id not in seen]
        if not fresh:
            return row.total_queries, row.cache_hits
        total = row.total_queries + len(fresh)
        if total > limits.max_queries:
            raise QueryLimitExceededError(row.id, limit=limits.max_queries)
        start = row.total_queries + 1
        await conn.execute(
            insert(Q), [_query_values(row.id, start + i, q) for i, q in enumerate(fresh)]
        )
        hits = row.cache_hits + sum(q.cache_hit for q in fresh)
        counts = dict(row.query_type_counts or {})
        for q in fresh:
            counts[q.query_type] = counts.get(q.query_type, 0) + 1
        stamps = [q.timestamp for q in fresh]
        first = min([*stamps, *filter(None, [row.first_query_at])])
        last = max([*stamps, *filter(None, [row.last_query_at])])
        values.update(
            total_queries=total,
            cache_hits=hits,
            query_type_counts=counts,
            first_query_at=first,
            last_query_at=last,
        )
        return total, hits

    @staticmethod
    def _merge_sections(row: Row[Any], changes: SessionChanges, values: dict[str, Any]) -> None:
        for section in STATE_SECTIONS:
            sets = changes.set_keys.get(section) or {}
            deletes = changes.deleted_keys.get(section) or []
            if not sets and not deletes:
                continue
            column = _SECTION_COLUMNS[section]
            merged = dict(getattr(row, column) or {})
            merged.update(sets)
            for key in deletes:
                merged.pop(key, None)
            if sets and len(merged) > MAX_STATE_KEYS:  # deleting alone never grows it
                raise ContextValueError(
                    section, len(merged), f"would hold more than {MAX_STATE_KEYS} keys"
                )
            values[column] = merged

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
        stmt = select(*_SUMMARY_COLUMNS).where(S.c.user_id == user_id)
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
            rows = (await conn.execute(stmt)).all()
        return summaries_from_rows(_decoded_listing_rows(rows), utcnow())

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
            rows = (await conn.execute(stmt)).all()
            outcome.archived = len(rows)
            if record_facts:
                facts = []
                for row in rows:
                    try:
                        facts.append(_facts_from_row(row))
                    except UNDECODABLE as exc:
                        outcome.unreadable[row.id] = (row.user_id, failure_reason(exc))
                outcome.metrics_recorded = await insert_missing_facts(conn, facts, recorded_at=now)
            await release(conn, [row.id for row in rows if row.id not in outcome.unreadable])
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
            values = _session_values(session)
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
                _query_values(s.id, i + 1, q)
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
