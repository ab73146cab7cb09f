"""The SQL schema, one definition for SQLite and PostgreSQL, and the engine factory.

Tables:

- ``sessions`` (:class:`SessionRecord`): one row per session, active or archived, with the
  history's counters so that reading or listing a session never touches its queries.
- ``session_queries`` (:class:`QueryRow`): one row per tracked query; ``seq`` numbers a
  session's queries 1..N, so a page of history is a range scan.
- ``session_metrics`` (:class:`SessionMetrics`): one row per finished session for analytics,
  with its assets, tags and per-type query counts in side tables
  (:class:`SessionMetricAsset`, :class:`SessionMetricTag`, :class:`SessionMetricQueryType`),
  so every statistic is a plain ``GROUP BY`` on SQLite and PostgreSQL alike.
- ``session_quarantine`` (:class:`QuarantineRow`): sessions that archival could not move for
  a reason of their own (a value the archive cannot hold, a record that cannot be decoded),
  with the reason; they stay where they are, are retried by every cleanup, and are never
  removed by retention until an operator deletes them.
- ``session_shares`` (:class:`ShareRow`): who may read which session besides its owner
  (``fiml.sessions.sharing``).
- ``session_templates`` (:class:`TemplateRow`): each user's named session templates
  (``fiml.sessions.templates``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pydantic_core
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    event,
    text,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from fiml.core.config import DEFAULT_DATABASE_MAX_OVERFLOW, DEFAULT_DATABASE_POOL_SIZE

__all__ = [
    "READ_ONLY_OPTION",
    "STATEMENT_SNAPSHOT_OPTION",
    "TOO_MANY_CONNECTIONS",
    "UNBOUNDED_WAIT_SECONDS",
    "Base",
    "EventRow",
    "JsonType",
    "QuarantineRow",
    "QueryRow",
    "SessionMetricAsset",
    "SessionMetricQueryType",
    "SessionMetricTag",
    "SessionMetrics",
    "SessionRecord",
    "SessionSearchTerm",
    "ShareRow",
    "TemplateRow",
    "create_engine",
    "create_thread_engine",
    "is_sqlite",
    "metadata",
]

READ_ONLY_OPTION = "fiml_read_only"
STATEMENT_SNAPSHOT_OPTION = "fiml_statement_snapshot"
"""On SQLite, connections with this execution option begin no transaction: each statement
reads a snapshot of its own (for reads of one statement, or whose statements need not agree)."""
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class JsonType(TypeDecorator[Any]):
    """JSON on SQLite, JSONB on PostgreSQL.

    Chosen per dialect when a statement is compiled rather than with
    ``JSON().with_variant(JSONB(), "postgresql")``, which needs the PostgreSQL dialect's
    JSONB at import: that would make every SQLite process import the dialect.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base bound to FIML's metadata."""

    metadata = metadata


class SessionRecord(Base):
    """One analysis session: identity, lifecycle, state sections and history counters."""

    __tablename__ = "sessions"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    session_type: Mapped[str] = mapped_column(String(32))
    assets: Mapped[list[str]] = mapped_column(JsonType)
    tags: Mapped[list[str]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_accessed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)
    total_queries: Mapped[int] = mapped_column(Integer, default=0)
    cache_hits: Mapped[int] = mapped_column(Integer, default=0)
    query_type_counts: Mapped[dict[str, int]] = mapped_column(JsonType)
    first_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    context: Mapped[dict[str, Any]] = mapped_column(JsonType)
    preferences: Mapped[dict[str, Any]] = mapped_column(JsonType)
    intermediate_results: Mapped[dict[str, Any]] = mapped_column(JsonType)
    session_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType)

    # Partial indexes are declared once, for SQLite; a PostgreSQL engine gives them the
    # same condition (see create_engine), since declaring ``postgresql_where`` here would
    # import the PostgreSQL dialect in every process.
    __table_args__ = (
        Index("ix_sessions_user_created", "user_id", "created_at", "id"),
        Index(
            "ix_sessions_active_expiry",
            "expires_at",
            sqlite_where=text("archived_at IS NULL"),
        ),
        Index(
            "ix_sessions_archived_at",
            "archived_at",
            sqlite_where=text("archived_at IS NOT NULL"),
        ),
    )


class SessionSearchTerm(Base):
    """One asset (``kind`` 'asset') or tag ('tag') a session is found by
    (:mod:`fiml.sessions.search`), with its user and creation time, so that finding a user's
    sessions by one is a range scan of ``(user_id, kind, term, created_at, session_id)``,
    newest first, whatever the number of sessions stored. Kept by the write path."""

    __tablename__ = "session_search_terms"

    session_id: Mapped[UUID] = mapped_column(
        Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_session_search_terms_user_term",
            "user_id",
            "kind",
            "term",
            "created_at",
            "session_id",
        ),
    )


class QueryRow(Base):
    """One tracked query; ``seq`` is its 1-based position in its session's history.

    The key is ``(session_id, seq)``, so a page of history is a range scan of the key;
    ``(session_id, id)`` is unique, so re-sending a query never stores it twice.
    """

    __tablename__ = "session_queries"

    session_id: Mapped[UUID] = mapped_column(
        Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[UUID] = mapped_column(Uuid, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    query_type: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JsonType)
    result_summary: Mapped[str | None] = mapped_column(Text)
    execution_time_ms: Mapped[float | None] = mapped_column(Float)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("session_id", "id"),)


class EventRow(Base):
    """One event of a session's timeline (:mod:`fiml.sessions.events`); ``seq`` is its
    1-based place, so a page of the timeline is a range scan of the key."""

    __tablename__ = "session_events"

    session_id: Mapped[UUID] = mapped_column(
        Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JsonType)


class SessionMetrics(Base):
    """Analytics facts about one finished session; recording it again replaces the row.

    ``completed`` is true when the session's user closed it, false when it expired
    unclosed (abandoned if after fewer than two queries, see ``metrics.ABANDONED``).
    ``duration_seconds`` runs from creation to closing, or to the last
    activity of an abandoned session.
    """

    __tablename__ = "session_metrics"

    session_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    session_type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float] = mapped_column(Float)
    total_queries: Mapped[int] = mapped_column(Integer)
    cache_hits: Mapped[int] = mapped_column(Integer)
    completed: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_session_metrics_created", "created_at"),
        Index("ix_session_metrics_user_created", "user_id", "created_at"),
    )


def _metrics_key() -> Any:
    return mapped_column(
        Uuid, ForeignKey("session_metrics.session_id", ondelete="CASCADE"), primary_key=True
    )


class SessionMetricAsset(Base):
    """One asset a recorded session analysed."""

    __tablename__ = "session_metric_assets"

    session_id: Mapped[UUID] = _metrics_key()
    asset: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_session_metric_assets_asset", "asset"),)


class SessionMetricTag(Base):
    """One tag of a recorded session."""

    __tablename__ = "session_metric_tags"

    session_id: Mapped[UUID] = _metrics_key()
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_session_metric_tags_tag", "tag"),)


class SessionMetricQueryType(Base):
    """How many queries of one type a recorded session made."""

    __tablename__ = "session_metric_query_types"

    session_id: Mapped[UUID] = _metrics_key()
    query_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    queries: Mapped[int] = mapped_column(Integer)


class QuarantineRow(Base):
    """A session archival could not move, why, and since when; see the module docstring.

    No foreign key: on tiered deployments the session lives in Redis, not in ``sessions``.
    """

    __tablename__ = "session_quarantine"

    session_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class ShareRow(Base):
    """One reader of one session: ``reader_id`` may read ``session_id``, ``owner_id``'s.

    No foreign key, as for the quarantine: on tiered deployments the session lives in
    Redis until it is archived, and the grant must hold on both sides of archival.
    """

    __tablename__ = "session_shares"

    session_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    reader_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255))
    shared_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_session_shares_reader", "reader_id", "shared_at", "session_id"),)


class TemplateRow(Base):
    """A user's named template: what a session created from it starts with."""

    __tablename__ = "session_templates"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_type: Mapped[str] = mapped_column(String(32))
    assets: Mapped[list[str]] = mapped_column(JsonType)
    tags: Mapped[list[str]] = mapped_column(JsonType)
    ttl_hours: Mapped[float | None] = mapped_column(Float)
    preferences: Mapped[dict[str, Any]] = mapped_column(JsonType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def is_sqlite(engine: AsyncEngine) -> bool:
    """True when the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        from pathlib import Path

        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _json_text(value: Any) -> str:
    """The text of a JSON column's value: pydantic-core's serializer, 5-8x faster than
    ``json.dumps`` on these small values (a session row has seven JSON columns). Every
    value that reaches a JSON column was checked as strict JSON on its way in; a NaN, were
    one to slip through, is written as ``NaN`` as ``json.dumps`` writes it, which
    PostgreSQL refuses."""
    return pydantic_core.to_json(value, inf_nan_mode="constants").decode()


UNBOUNDED_WAIT_SECONDS = 60
"""How long an engine built without a timeout (migrations) waits for a pool connection
or for a connection slot on a full PostgreSQL."""
TOO_MANY_CONNECTIONS = "53300"
"""PostgreSQL's SQLSTATE for a connection refused because every slot is taken."""
_FIRST_RETRY_SECONDS = 0.05
_LONGEST_RETRY_SECONDS = 1.0


def _asyncpg_connector(url: str, timeout: float | None) -> Callable[[], Awaitable[Any]]:
    """An ``async_creator`` that opens asyncpg connections for ``url``, retrying one that
    PostgreSQL refuses for want of a free slot (SQLSTATE 53300) until ``timeout``.

    Only connecting is retried: nothing was sent yet, so no statement can run twice. The
    last refusal is raised as is; SQLAlchemy wraps it like any connection error.
    """
    import asyncpg

    parsed = make_url(url)
    params: dict[str, Any] = parsed.translate_connect_args(username="user")
    params.update(parsed.query)  # ssl=..., server settings: what the dialect passes on too
    if timeout is not None:
        params.update(command_timeout=timeout)
    window = timeout if timeout is not None else UNBOUNDED_WAIT_SECONDS

    async def connect() -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        pause = _FIRST_RETRY_SECONDS
        while True:
            left = deadline - loop.time()
            try:
                return await asyncpg.connect(**params, timeout=max(left, 0.001))
            except asyncpg.PostgresError as exc:
                if exc.sqlstate != TOO_MANY_CONNECTIONS or loop.time() + pause >= deadline:
                    raise
            await asyncio.sleep(pause)  # backoff: give other processes time to hang up
            pause = min(pause * 2, _LONGEST_RETRY_SECONDS)

    return connect


def create_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_DATABASE_POOL_SIZE,
    max_overflow: int = DEFAULT_DATABASE_MAX_OVERFLOW,
    timeout: float | None = None,
    echo: bool = False,
) -> AsyncEngine:
    """Build an async engine for a SQLite or PostgreSQL URL.

    SQLite gets WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` transactions so
    that a read-modify-write holds the write lock from its first read (other processes
    wait instead of overwriting); connections carrying the ``READ_ONLY_OPTION`` execution
    option begin a plain snapshot transaction instead. PostgreSQL gets a pool of at most
    ``pool_size + max_overflow`` connections; a connection PostgreSQL refuses because all
    its slots are taken is tried again with a backoff.

    ``timeout`` (seconds) bounds every PostgreSQL statement and connection attempt (the
    statement is cancelled on the server), the retries of a refused connection, the wait
    for a free connection in the pool, and SQLite's wait for its write lock; with None
    statements may run as long as they need (migrations), and SQLite waits 30 s for its
    lock and every engine :data:`UNBOUNDED_WAIT_SECONDS` for a connection.
    """
    pool_timeout = timeout if timeout is not None else UNBOUNDED_WAIT_SECONDS
    if make_url(url).get_backend_name() == "sqlite":
        _prepare_sqlite_file(url)
        engine = create_async_engine(  # sqlite3's timeout is its busy timeout
            url,
            echo=echo,
            pool_timeout=pool_timeout,
            connect_args={"timeout": timeout or 30},
            json_serializer=_json_text,
        )
        logging.getLogger("aiosqlite").addFilter(_AIOSQLITE_FILTER)  # again: a no-op
        _configure_sqlite(engine.sync_engine)
        return engine
    _partial_indexes_on_postgresql()
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        async_creator=_asyncpg_connector(url, timeout),
        json_serializer=_json_text,
    )


def _partial_indexes_on_postgresql() -> None:
    """Give every partial index of the schema its condition on PostgreSQL too, for DDL and
    schema comparisons through a PostgreSQL engine: the same ``WHERE`` as on SQLite.

    Done when the first PostgreSQL engine is built, which loads the dialect anyway, so
    that a SQLite process never imports it (setting it again changes nothing).
    """
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options["sqlite"]["where"]
            if where is not None:
                index.dialect_kwargs["postgresql_where"] = where


def create_thread_engine(url: URL, *, busy_timeout: float, echo: bool = False) -> Engine:
    """A synchronous engine on the standard library's ``sqlite3`` for the SQLite database
    that the async engine of ``url`` (``sqlite+aiosqlite``) opens, set up the same way (WAL,
    foreign keys, ``BEGIN IMMEDIATE`` unless ``READ_ONLY_OPTION``), its busy timeout
    ``busy_timeout`` seconds.

    The SQL backend runs each store operation on it in a database thread of its own, in
    one hop, where aiosqlite crosses to its thread and back for every step of every
    statement (cursor, execute, fetch, close, BEGIN, COMMIT).
    """
    engine = sa_create_engine(
        url.set(drivername="sqlite+pysqlite"),
        echo=echo,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        json_serializer=_json_text,
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """SQLAlchemy's recipe for SQLite transactions: the driver's own transaction handling
    off, and SQLAlchemy's "begin" emitting ours."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(STATEMENT_SNAPSHOT_OPTION, False):
            return  # sqlite3 in autocommit mode: every statement on its own
        read_only = options.get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class _WithoutStatements(logging.Filter):
    """Drops aiosqlite's DEBUG records, which quote every statement's bound parameters.

    Those parameters hold context values, and no context value may reach a log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_AIOSQLITE_FILTER = _WithoutStatements()
