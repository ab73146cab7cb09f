"""Connections to PostgreSQL are bounded and their faults typed (real PostgreSQL).

Waiting for a pooled connection ends after ``database_timeout_seconds``; a PostgreSQL
with no free connection slot (SQLSTATE 53300) is asked again until then; both end as a
StorageUnavailableError. The default pool keeps four busy processes under PostgreSQL's
default ``max_connections``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fiml.core.config import Settings
from fiml.core.errors import StorageUnavailableError
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.backends import build_sql_backend
from tests.conftest import settings_for, sql_archive
from tests.reliability.services import wait_until
from tests.sessions.concurrent_writers import run_workers
from tests.sessions.pg_roles import admin_dsn, plain_role


async def test_waiting_for_a_pooled_connection_ends_at_the_timeout(tmp_path: Path) -> None:
    settings = await settings_for(
        "postgres",
        tmp_path,
        database_pool_size=1,
        database_max_overflow=0,
        database_timeout_seconds=0.3,
    )
    backend = build_sql_backend(settings)
    try:
        await backend.initialize()
        loop = asyncio.get_running_loop()
        async with backend.engine.connect():  # a slow call holding the only connection
            started = loop.time()
            with pytest.raises(StorageUnavailableError, match="no free connection in the pool"):
                await backend.count_sessions()
            waited = loop.time() - started
        assert waited < 10, waited  # was 60 s, then an untyped SQLAlchemy TimeoutError
        assert await backend.count_sessions() == 0  # the connection is free again
    finally:
        await backend.close()


@pytest.fixture
async def one_slot_url(tmp_path: Path) -> str:
    """A URL whose role PostgreSQL lets hold one connection at a time."""
    settings = await settings_for("postgres", tmp_path)
    return await plain_role(settings.database_url, "one_slot", "CONNECTION LIMIT 1")


async def test_a_postgres_with_no_free_slot_fails_as_unavailable_after_the_timeout(
    one_slot_url: str,
) -> None:
    settings = Settings(database_url=one_slot_url, redis_url=None, database_timeout_seconds=0.5)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        await sql_archive(store).engine.dispose()  # give the role's one slot back
        holder = await asyncpg.connect(admin_dsn(one_slot_url))
        try:
            with pytest.raises(StorageUnavailableError) as caught:
                await store.append_query(session.id, QueryRecord(query_type="price"))
            assert caught.value.backend == "postgresql"
            assert "too many clients" in caught.value.reason
            assert "FIML_DATABASE_POOL_SIZE" in caught.value.reason
        finally:
            await holder.close()
        stored = await store.get_session(session.id)
        assert stored is not None and stored.state.history.total_queries == 0


async def test_a_refused_connection_is_tried_again_until_a_slot_frees(
    one_slot_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=one_slot_url, redis_url=None, database_timeout_seconds=60)
    connect = asyncpg.connect
    refused: list[str] = []

    async def counting_connect(*args: Any, **kwargs: Any) -> Any:
        try:
            return await connect(*args, **kwargs)
        except asyncpg.TooManyConnectionsError as exc:
            refused.append(exc.sqlstate)
            raise

    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        await sql_archive(store).engine.dispose()
        holder = await asyncpg.connect(admin_dsn(one_slot_url))
        monkeypatch.setattr(asyncpg, "connect", counting_connect)
        tracking = asyncio.create_task(
            store.append_query(session.id, QueryRecord(query_type="price"))
        )
        try:

            async def refused_twice() -> bool:
                return len(refused) >= 2 or tracking.done()

            await wait_until(refused_twice, seconds=30)
            assert not tracking.done()  # still waiting for a slot, not failed
        finally:
            await holder.close()
        counters = await tracking
        assert counters.total_queries == 1 and counters.added_queries == 1
        assert set(refused) == {"53300"}
        stored = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert stored is not None and len(stored.state.history.queries) == 1


@pytest.mark.timeout(180)
async def test_four_processes_of_fifty_writers_on_postgres_keep_every_query(
    tmp_path: Path,
) -> None:
    """The default pool (5 + 5 overflow a process): 4 x 10 connections fit under
    max_connections 100; with the former 10 + 20, 120 did not, and 21 of 200 writes failed
    with PostgreSQL's "too many clients"."""
    settings = await settings_for("postgres", tmp_path)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity")
        await run_workers(settings, "append", session.id, processes=4, writers=50)
        loaded = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert loaded is not None
    history = loaded.state.history
    assert history.total_queries == len(history.queries) == 200
    assert len({q.id for q in history.queries}) == 200
    assert history.query_type_counts == {"t0": 100, "t1": 100}
    assert loaded.version == 200
