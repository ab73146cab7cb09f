"""A database statement past ``database_timeout_seconds`` fails as a storage error,
changes nothing, and leaves the store working (real PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from fiml.core.errors import StorageUnavailableError
from fiml.sessions import QueryRecord, SessionStore
from tests.conftest import settings_for
from tests.reliability.services import TcpProxy


async def test_a_write_stuck_behind_a_postgres_row_lock_fails_after_the_timeout(
    tmp_path: Path,
) -> None:
    settings = await settings_for("postgres", tmp_path, database_timeout_seconds=0.3)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        blocker = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
        try:
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", session.id)
            started = asyncio.get_running_loop().time()
            with pytest.raises(StorageUnavailableError, match="FIML_DATABASE_TIMEOUT_SECONDS"):
                await store.append_query(session.id, QueryRecord(query_type="price"))
            assert asyncio.get_running_loop().time() - started < 5
            await lock.rollback()
        finally:
            await blocker.close()
        stored = await store.get_session(session.id)
        assert stored is not None and stored.state.history.total_queries == 0
        await store.append_query(session.id, QueryRecord(query_type="price"))
        stored = await store.get_session(session.id)
        assert stored is not None and stored.state.history.total_queries == 1


async def test_a_write_waiting_for_sqlites_lock_fails_after_the_timeout(tmp_path: Path) -> None:
    settings = await settings_for("sqlite", tmp_path, database_timeout_seconds=0.3)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        path = settings.database_url.split(":///", 1)[1]
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            with pytest.raises(StorageUnavailableError, match="write lock was held past"):
                await store.append_query(session.id, QueryRecord(query_type="price"))
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        await store.append_query(session.id, QueryRecord(query_type="price"))
        stored = await store.get_session(session.id)
        assert stored is not None and stored.state.history.total_queries == 1


async def test_a_postgres_black_hole_fails_each_call_within_the_timeout(tmp_path: Path) -> None:
    """PostgreSQL reachable but silent (a network black hole): every call fails with a
    storage error after about the timeout, nothing half-done is left, and the same store
    works again once the network does."""
    settings = await settings_for("postgres", tmp_path, database_timeout_seconds=0.5)
    async with TcpProxy.in_front_of(settings.database_url) as proxy:
        through = settings.model_copy(
            update={"database_url": proxy.url_through(settings.database_url)}
        )
        async with SessionStore(through) as store:
            session = await store.create_session(["AAPL"], "equity", user_id="u1")
            proxy.stalled = True
            loop = asyncio.get_running_loop()
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "track": lambda: store.append_query(session.id, QueryRecord(query_type="price")),
                "read": lambda: store.get_session(session.id),
                "list": lambda: store.list_user_sessions("u1"),
                "create": lambda: store.create_session(["MSFT"], "equity", user_id="u1"),
            }
            for name, call in calls.items():
                started = loop.time()
                with pytest.raises(StorageUnavailableError) as caught:
                    await call()
                waited = loop.time() - started
                assert caught.value.backend == "postgresql", name
                assert waited < 3, (name, waited)
            proxy.stalled = False
            stored = await store.get_session(session.id)
            assert stored is not None and stored.state.history.total_queries == 0
            assert [s.id for s in await store.list_user_sessions("u1")] == [session.id]
            await store.append_query(session.id, QueryRecord(query_type="price"))
            stored = await store.get_session(session.id)
            assert stored is not None and stored.state.history.total_queries == 1
