"""The Redis tier's connections, on redis-py's own blocking pool: a call waits for a free
connection, but not forever; a call past the timeout fails, and neither it nor a cancelled
call leaves a reply for the next one; a restarted Redis is served again at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.core.errors import StorageUnavailableError
from fiml.core.redis_client import redis_client
from fiml.sessions import SessionStore
from fiml.sessions.backends.redis import RedisBackend
from tests.conftest import require_postgres, require_redis, reset_postgres
from tests.reliability.archive_checks import query
from tests.reliability.services import PrivateRedis, wait_until

HANG_SECONDS = 10
"""A bound that only tells a hang apart from a call that returned."""
LIST = "fiml:test:never-filled"


def _backend(*, max_connections: int, timeout: float = 5, pool_wait: float = 60) -> RedisBackend:
    settings = Settings(redis_max_connections=max_connections, redis_timeout_seconds=timeout)
    client = redis_client(require_redis(), settings, pool_wait=pool_wait)
    return RedisBackend.on_client(client, settings=settings)


@pytest.fixture
async def client() -> AsyncIterator[redis.Redis]:
    """A plain client on the test database, to push to the list the backend blocks on."""
    plain = redis.Redis.from_url(require_redis(), decode_responses=True)
    await plain.delete(LIST)
    yield plain
    await plain.delete(LIST)
    await plain.aclose()


async def _blocked_in_blpop(client: redis.Redis) -> bool:
    """Whether some client of the test database is blocked in a BLPOP."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    return any(c["cmd"] == "blpop" and c["db"] == db for c in await client.client_list())


async def test_a_call_waits_for_the_only_connection_then_runs(client: redis.Redis) -> None:
    backend = _backend(max_connections=1)
    try:
        await backend.initialize()
        holder = asyncio.create_task(backend._call("BLPOP", LIST, 0))  # holds the connection
        waiting = asyncio.create_task(backend.load(uuid4(), recent_queries=0))
        done, _ = await asyncio.wait({waiting}, timeout=0.2)
        assert not done  # still waiting, not failed
        await client.lpush(LIST, "go")
        assert await asyncio.wait_for(holder, HANG_SECONDS) == (LIST, "go")
        assert await asyncio.wait_for(waiting, HANG_SECONDS) is None
    finally:
        await backend.close()


async def test_a_call_that_gets_no_connection_in_time_is_a_storage_error(
    client: redis.Redis,
) -> None:
    backend = _backend(max_connections=1, pool_wait=0.05)
    try:
        await backend.initialize()
        holder = asyncio.create_task(backend._call("BLPOP", LIST, 0))
        with pytest.raises(StorageUnavailableError, match="No connection available") as caught:
            await asyncio.wait_for(backend.load(uuid4(), recent_queries=0), HANG_SECONDS)
        assert caught.value.backend == "redis"
        await client.lpush(LIST, "go")
        await asyncio.wait_for(holder, HANG_SECONDS)
        assert await backend.load(uuid4(), recent_queries=0) is None  # the pool recovered
    finally:
        await backend.close()


async def test_a_call_past_the_timeout_fails_and_its_late_reply_reaches_no_one(
    client: redis.Redis,
) -> None:
    """The connection of a call Redis has not answered within the timeout is dropped: were
    it reused, the next command would queue behind the still-blocked BLPOP."""
    backend = _backend(max_connections=1, timeout=0.2)
    try:
        await backend.initialize()
        with pytest.raises(StorageUnavailableError, match=r"no reply within 0\.2 s"):
            await asyncio.wait_for(backend._call("BLPOP", LIST, 0), HANG_SECONDS)
        await client.lpush(LIST, "late")
        assert await asyncio.wait_for(backend._call("ECHO", "after"), HANG_SECONDS) == "after"
    finally:
        await backend.close()


async def test_a_cancelled_call_leaves_no_reply_for_the_next_one(client: redis.Redis) -> None:
    backend = _backend(max_connections=1)
    try:
        await backend.initialize()
        call = asyncio.create_task(backend._call("BLPOP", LIST, 0))
        await wait_until(lambda: _blocked_in_blpop(client), seconds=HANG_SECONDS)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await client.lpush(LIST, "stale")
        assert await asyncio.wait_for(backend._call("ECHO", "fresh"), HANG_SECONDS) == "fresh"
    finally:
        await backend.close()


async def test_a_server_that_never_answers_is_a_storage_error_within_the_timeout() -> None:
    silent: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # accepts the connection, never replies

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{port}/0", settings=Settings(redis_timeout_seconds=0.2)
    )
    try:
        with pytest.raises(StorageUnavailableError, match=r"within 0\.2 s"):
            await asyncio.wait_for(backend.initialize(), HANG_SECONDS)
    finally:
        await backend.close()
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(60)
async def test_connections_left_from_before_a_restart_are_replaced_unseen(tmp_path: Path) -> None:
    """Every pooled connection is stale once Redis restarts; no call after the restart
    fails for it (the pool reconnects a connection the server closed before handing it
    out), and while Redis is down every call fails with a storage error."""
    pg = await require_postgres()
    await reset_postgres(pg)
    async with PrivateRedis(tmp_path) as server:
        settings = Settings(database_url=pg, redis_url=server.url, redis_max_connections=4)
        async with SessionStore(settings) as store:
            before = [store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(8)]
            await asyncio.gather(*before)  # several pooled connections, all open

            await server.kill()
            for _ in range(3):
                with pytest.raises(StorageUnavailableError) as caught:
                    await asyncio.wait_for(store.get_session(uuid4()), HANG_SECONDS)
                assert caught.value.backend == "redis"

            await server.start()
            sessions = await asyncio.gather(
                *(store.create_session(["MSFT"], "equity", user_id="u2") for _ in range(8))
            )
            for n, session in enumerate(sessions):
                await store.append_query(session.id, query(n))
                loaded = await store.get_session(session.id)
                assert loaded is not None and loaded.state.history.total_queries == 1
