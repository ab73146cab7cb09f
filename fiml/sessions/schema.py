"""Create, upgrade, check, verify and drop the session schema through Alembic migrations.

Production databases are migrated on purpose (``fiml db upgrade``,
``scripts/setup_session_db.py create``); ``SessionStore.initialize()`` only checks their
revision with :func:`check_schema`, one query, and migrates the embedded SQLite file (or a
database whose settings opt in) with :func:`upgrade_schema`.

Alembic is imported only to migrate or to inspect: the shipped revisions are listed in
:data:`REVISIONS`, so that a start whose database is already at head (every start of the
CLI and the server but the first) checks it without loading Alembic and its migration
scripts, a good part of a command's start-up time. tests/sessions/test_schema.py holds the
list to Alembic's own history of the scripts, so that the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.core.errors import SchemaNewerError, SchemaOutdatedError
from fiml.sessions.db import metadata

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "FULL_TEXT_OBJECTS",
    "HEAD_REVISION",
    "REVISIONS",
    "SchemaReport",
    "check_schema",
    "current_revision",
    "drop_schema",
    "head_revision",
    "upgrade_schema",
    "verify_schema",
]

_ADVISORY_LOCK_KEY = 0x46494D4C  # "FIML": serializes concurrent upgrades on PostgreSQL
_VERSION_TABLE = "alembic_version"
_READ_REVISION = text("SELECT version_num FROM alembic_version")


REVISIONS = ("0001", "0002", "0003", "0007", "0006", "0005", "0004")
"""The revisions of the migrations shipped in ``migrations/versions``, oldest first. A new
migration's revision is appended here too: tests/sessions/test_schema.py fails until it is."""
HEAD_REVISION = REVISIONS[-1]


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the migrations shipped inside this package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("fiml.sessions") / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of FIML."""
    return HEAD_REVISION


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _refuse_newer(url: URL, current: str | None) -> None:
    """A revision this FIML does not ship can only come from a newer FIML (or a foreign
    tool): migrating or using it could lose data, so it is refused either way."""
    if current is not None and current not in REVISIONS:
        raise SchemaNewerError(_shown(url), current, head_revision())


def _has_version_table(connection: Connection) -> bool:
    return inspect(connection).has_table(_VERSION_TABLE)


def _joined(versions: Sequence[str]) -> str | None:
    # Alembic keeps one row per head; FIML's migrations are one line, so a database with
    # several rows was branched by something else, and no revision of ours matches it.
    return "+".join(sorted(versions)) if versions else None


def _revision_in(connection: Connection) -> str | None:
    """:func:`current_revision` inside a transaction, which a failed query would abort."""
    if not _has_version_table(connection):
        return None
    return _joined(connection.execute(_READ_REVISION).scalars().all())


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's migration revision, or None when it holds no FIML schema.

    One query when the schema exists; the catalog is asked only when that query fails.
    """
    async with engine.connect() as conn:
        try:
            versions = (await conn.execute(_READ_REVISION)).scalars().all()
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            await conn.rollback()
            if await conn.run_sync(_has_version_table):
                raise  # the table is there but cannot be read: not "no schema"
            return None
    return _joined(versions)


async def check_schema(engine: AsyncEngine) -> str:
    """The database's revision if it is this FIML's newest; otherwise refuse, changing
    nothing: SchemaOutdatedError (behind, or no schema) or SchemaNewerError (ahead)."""
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return head
    _refuse_newer(engine.url, current)
    raise SchemaOutdatedError(_shown(engine.url), current, head)


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    current = _revision_in(connection)
    _refuse_newer(connection.engine.url, current)
    if revision == "head" and current == HEAD_REVISION:
        return  # already there: spare every start of a SQLite process Alembic's machinery
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


async def upgrade_schema(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (creating every table on an empty database).

    Refuses (SchemaNewerError) a database migrated past this FIML's newest revision.
    """
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


@dataclass
class SchemaReport:
    """What ``verify`` found: the revision, and tables or columns that are missing."""

    current_revision: str | None
    head_revision: str
    missing_tables: list[str] = field(default_factory=list)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the database is at head with every table and column present."""
        return (
            self.current_revision == self.head_revision
            and not self.missing_tables
            and not self.missing_columns
        )


def _inspect(connection: Connection) -> SchemaReport:
    current = _revision_in(connection)
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    report = SchemaReport(current_revision=current, head_revision=head_revision())
    for table in metadata.sorted_tables:
        if table.name not in present:
            report.missing_tables.append(table.name)
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in columns]
        if missing:
            report.missing_columns[table.name] = missing
    return report


async def verify_schema(engine: AsyncEngine) -> SchemaReport:
    """Compare the database with the schema this version of FIML expects."""
    async with engine.connect() as conn:
        return await conn.run_sync(_inspect)


FULL_TEXT_OBJECTS = frozenset(
    {
        # PostgreSQL: tsvector columns and their GIN indexes (the trigger goes with the table)
        "context_search",
        "summary_search",
        "ix_sessions_context_search",
        "ix_session_queries_summary_search",
        # SQLite: the FTS5 table, its shadow tables, and the documents' table
        "session_search_docs",
        "session_search_fts",
        *(f"session_search_fts_{shadow}" for shadow in ("data", "idx", "content", "docsize")),
        "session_search_fts_config",
    }
)
"""What migration 0005 creates outside the ORM schema (``sql_search`` reads them), by name:
a comparison of the database with the models leaves them out."""
_DROP_SEARCH_FTS = text("DROP TABLE IF EXISTS session_search_fts")
_DROP_SEARCH_DOCS = text("DROP TABLE IF EXISTS session_search_docs")
_PG_SEARCH_FUNCTION = "DROP FUNCTION IF EXISTS fiml_session_context_search() CASCADE"


def _drop(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        connection.execute(_DROP_SEARCH_FTS)
        connection.execute(_DROP_SEARCH_DOCS)
    metadata.drop_all(connection)
    if connection.dialect.name == "postgresql":
        connection.execute(text(_PG_SEARCH_FUNCTION))
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def drop_schema(engine: AsyncEngine) -> None:
    """Drop every FIML table and the migration history. Destroys all sessions."""
    async with engine.begin() as conn:
        await conn.run_sync(_drop)
