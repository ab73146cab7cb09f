"""PostgreSQL drops the store's pooled connections (a restart, a failover, an operator's
``pg_terminate_backend``): the next operation still succeeds, exactly once.

The pool does not ping a connection before lending it; a dead one fails its first
statement, and the store runs the operation again once on a fresh connection where nothing
could have been committed. Each test kills every connection of its own test database but
the one it kills them from, through PostgreSQL itself, then uses the store at once.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from fiml.core.config import Settings
from fiml.sessions import ALL_QUERIES, SessionStore
from fiml.sessions.models import QueryRecord
from tests.conftest import settings_for


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """PostgreSQL alone, emptied."""
    return await settings_for("postgres", tmp_path)


async def kill_connections(database_url: str) -> int:
    """Terminate every other connection to the URL's database; how many there were."""
    parts = urlsplit(database_url.replace("+asyncpg", ""))
    admin = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        database=parts.path.lstrip("/"),
    )
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return int(killed)


def query(n: int) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"n": n})


async def test_a_read_after_the_pool_connections_were_killed_succeeds(
    settings: Settings,
) -> None:
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        await store.append_query(session.id, query(1))
        assert await kill_connections(settings.database_url) >= 1

        read = await store.get_session(session.id)

        assert read is not None
        assert read.state.history.total_queries == 1


async def test_a_write_after_the_pool_connections_were_killed_counts_once(
    settings: Settings,
) -> None:
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        assert await kill_connections(settings.database_url) >= 1

        counters = await store.append_query(session.id, query(1), context={"step": 1})

        assert counters.total_queries == 1
        assert counters.added_queries == 1
        read = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert read is not None
        assert [q.parameters for q in read.state.history.queries] == [{"n": 1}]
        assert read.state.context == {"step": 1}


async def test_a_write_of_many_queries_after_the_connections_were_killed_counts_once(
    settings: Settings,
) -> None:
    """The locked path (several queries in one write): its transaction is retried."""
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        session.add_query(query(1))
        session.add_query(query(2))
        assert await kill_connections(settings.database_url) >= 1

        await store.update_session(session.id, session)

        read = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert read is not None
        assert read.state.history.total_queries == 2
        assert [q.parameters["n"] for q in read.state.history.queries] == [1, 2]
