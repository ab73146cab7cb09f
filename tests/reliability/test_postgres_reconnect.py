"""PostgreSQL's writes without a lock and without a ping: another write overtaking one,
and PostgreSQL dropping the store's pooled connections (a restart, a failover, an operator's
``pg_terminate_backend``): the next operation still succeeds, exactly once.

The pool does not ping a connection before lending it; a dead one fails its first
statement, and the store runs the operation again once on a fresh connection where nothing
could have been committed. Each test kills every connection of its own test database but
the one it kills them from, through PostgreSQL itself, then uses the store at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy import event

from fiml.core.config import Settings
from fiml.sessions import ALL_QUERIES, SessionStore
from fiml.sessions.models import QueryRecord
from tests.conftest import settings_for, sql_archive


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


async def test_a_write_that_another_write_overtook_keeps_both(settings: Settings) -> None:
    """Another process's write commits between this write's read and its conditional
    statement: the statement changes nothing, and the write runs again under the row lock,
    so neither write's context key nor the query is lost."""
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        engine = sql_archive(store).engine.sync_engine
        overtaken: list[str] = []

        def overtake(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if overtaken or "bumped" not in statement:
                return
            overtaken.append(statement)  # once: the competing write runs in autocommit
            conn.exec_driver_sql(
                "UPDATE sessions SET version = version + 1,"
                f" context = context || '{{\"theirs\": 1}}'::jsonb WHERE id = '{session.id}'"
            )

        event.listen(engine, "before_cursor_execute", overtake)
        try:
            counters = await store.append_query(session.id, query(1), context={"mine": 2})
        finally:
            event.remove(engine, "before_cursor_execute", overtake)

        assert overtaken
        assert counters.total_queries == 1
        read = await store.get_session(session.id)
        assert read is not None
        assert read.state.context == {"theirs": 1, "mine": 2}
        assert read.state.history.total_queries == 1
        assert read.version == counters.version
        # The overtaken statement wrote none of its rows: the events are the locked write's.
        timeline = await store.get_timeline(session.id)
        assert [e.kind for e in timeline.events] == ["context", "query"]
