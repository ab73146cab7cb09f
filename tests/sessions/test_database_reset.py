"""The tests' PostgreSQL reset copes with a database another version of FIML left behind."""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from fiml.sessions.schema import HEAD_REVISION
from tests.conftest import POSTGRES_URL, _ensure_database, require_service
from tests.database_reset import reset_postgres

URL = make_url(POSTGRES_URL).set(database="fiml_test_reset").render_as_string(False)


async def _connect() -> asyncpg.Connection:
    return await asyncpg.connect(make_url(URL).set(drivername="postgresql").render_as_string(False))


async def test_a_later_revisions_table_and_function_do_not_stop_the_reset() -> None:
    require_service("PostgreSQL", URL, 5432)
    await _ensure_database(URL)
    await reset_postgres(URL)
    conn = await _connect()
    try:  # what a later FIML's migration leaves: a table that depends on sessions, a function
        await conn.execute(
            "CREATE TABLE later_events (session_id uuid, archive_month timestamptz, "
            "FOREIGN KEY (session_id, archive_month) REFERENCES sessions (id, archive_month));"
            "CREATE FUNCTION later_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';"
            "UPDATE alembic_version SET version_num = '9999'"
        )
    finally:
        await conn.close()

    await reset_postgres(URL)

    conn = await _connect()
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        functions = await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'later_fn'")
        revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    assert "later_events" not in tables and "sessions" in tables
    assert functions == 0
    assert revision == HEAD_REVISION
