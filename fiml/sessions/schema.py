"""Create, upgrade, verify and drop the session schema through Alembic migrations.

``SessionStore.initialize()``, ``scripts/setup_session_db.py`` and ``fiml db`` all use
these functions, so every database FIML touches is at the same migration head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.sessions.db import metadata

__all__ = ["SchemaReport", "drop_schema", "head_revision", "upgrade_schema", "verify_schema"]

_ADVISORY_LOCK_KEY = 0x46494D4C  # "FIML": serializes concurrent upgrades on PostgreSQL


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the migrations shipped inside this package."""
    config = Config()
    config.set_main_option("script_location", str(files("fiml.sessions") / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of FIML."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations are shipped with this package")
    return head


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    command.upgrade(alembic_config(connection), revision)


async def upgrade_schema(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (creating every table on an empty database)."""
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
    current = MigrationContext.configure(connection).get_current_revision()
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


def _drop(connection: Connection) -> None:
    metadata.drop_all(connection)
    connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


async def drop_schema(engine: AsyncEngine) -> None:
    """Drop every FIML table and the migration history. Destroys all sessions."""
    async with engine.begin() as conn:
        await conn.run_sync(_drop)
