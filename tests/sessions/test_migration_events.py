"""Revision 0006 (``session_events``) upgrades and downgrades on SQLite and PostgreSQL,
leaving every other table and its rows as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.db import create_engine
from fiml.sessions.schema import alembic_config, drop_schema, head_revision, upgrade_schema
from tests.conftest import require_postgres, sqlite_url


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _downgrade(conn: Connection, revision: str) -> None:
    command.downgrade(alembic_config(conn), revision)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_events_revision_upgrades_and_downgrades(dialect: str, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path) if dialect == "sqlite" else await require_postgres()
    engine = create_engine(url)
    try:
        await drop_schema(engine)
        await upgrade_schema(engine)
        settings = Settings(database_url=url, redis_url=None)
        async with SessionStore(settings) as store:
            session = await store.create_session(["AAPL"], "equity", user_id="alice")
            await store.append_query(session.id, QueryRecord(query_type="price"))
            assert len((await store.get_timeline(session.id)).events) == 1
        async with engine.begin() as conn:
            assert "session_events" in await conn.run_sync(_tables)
            await conn.run_sync(_downgrade, "0007")
        async with engine.begin() as conn:
            tables = await conn.run_sync(_tables)
            assert "session_events" not in tables and "session_queries" in tables
            kept = await conn.execute(text("SELECT count(*) FROM session_queries"))
            assert kept.scalar_one() == 1
            version = await conn.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0007"
        await upgrade_schema(engine)
        async with engine.begin() as conn:
            assert "session_events" in await conn.run_sync(_tables)
            version = await conn.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == head_revision()
    finally:
        await drop_schema(engine)
        await engine.dispose()
