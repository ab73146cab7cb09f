"""Migration 0005 (session search): its downgrade removes every object it added, and its
upgrade indexes the sessions stored before it, so they are found as new ones are."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.db import create_engine
from fiml.sessions.schema import FULL_TEXT_OBJECTS, alembic_config, upgrade_schema
from tests.sessions.test_schema import database_url


def _downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(connection), revision)


def _search_objects(connection: Connection) -> set[str]:
    inspector = inspect(connection)
    names = set(inspector.get_table_names())
    for table in ("sessions", "session_queries"):
        names |= {c["name"] for c in inspector.get_columns(table)}
        names |= {str(i["name"]) for i in inspector.get_indexes(table)}
    return names & (FULL_TEXT_OBJECTS | {"session_search_terms"})


async def _migrate(url: str, revision: str, *, down: bool = False) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if down:
                await conn.run_sync(_downgrade, revision)
        if not down:
            await upgrade_schema(engine, revision)
        async with engine.connect() as conn:
            return await conn.run_sync(_search_objects)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_the_upgrade_indexes_older_sessions_and_the_downgrade_removes_it_all(
    kind: str, tmp_path: Path
) -> None:
    url = await database_url(kind, tmp_path)
    assert await _migrate(url, "head")
    settings = Settings(database_url=url, redis_url=None)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u", tags=["old"])
        query = QueryRecord(
            query_type="q", parameters={"symbol": "nvda"}, result_summary="Nvidia surges"
        )
        await store.append_query(session.id, query)
        await store.update_state(session.id, context={"why": "chip demand"})

    assert await _migrate(url, "0003", down=True) == set()
    assert await _migrate(url, "head")

    async with SessionStore(settings) as store:
        for criteria in (
            {"asset": "AAPL"},
            {"asset": "NVDA"},
            {"tag": "old"},
            {"text": "surges"},
            {"text": "chip demand"},
        ):
            page = await store.search_user_sessions("u", **criteria)  # type: ignore[arg-type]
            assert [s.id for s in page.sessions] == [session.id], criteria
