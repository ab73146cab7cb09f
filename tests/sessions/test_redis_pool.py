"""The Redis tier's connections: a pool that waits when full, is fair and never loses a
connection, and exchanges bounded by the configured timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from fiml.core.config import Settings
from fiml.core.errors import StorageUnavailableError
from fiml.sessions.backends.redis import RedisBackend
from fiml.sessions.backends.redis_pool import WaitingConnectionPool, waiting_pool
from tests.conftest import require_redis


@pytest.fixture
async def pool() -> AsyncIterator[WaitingConnectionPool]:
    created = waiting_pool(require_redis(), max_connections=2)
    try:
        yield created
    finally:
        await created.aclose()


def _counts(pool: WaitingConnectionPool) -> tuple[int, int]:
    return len(pool._available_connections), len(pool._in_use_connections)


async def _ping(connection: AbstractConnection) -> object:
    await connection.send_command("PING")
    return await connection.read_response()


async def test_a_returned_connection_is_reused_and_answers(pool: WaitingConnectionPool) -> None:
    first = await pool.get_connection()
    assert await _ping(first) == "PONG"
    await pool.release(first)
    second = await pool.get_connection()
    assert second is first
    assert await _ping(second) == "PONG"
    await pool.release(second)
    assert _counts(pool) == (1, 0)


async def test_a_full_pool_makes_checkouts_wait_in_arrival_order(
    pool: WaitingConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    order: list[int] = []

    async def checkout(n: int) -> None:
        connection = await pool.get_connection()
        order.append(n)
        await pool.release(connection)

    waiting = [asyncio.create_task(checkout(n)) for n in range(5)]
    await asyncio.sleep(0.05)
    assert order == [] and all(not task.done() for task in waiting)
    for connection in held:
        await pool.release(connection)
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2, 3, 4]
    assert _counts(pool) == (2, 0)


async def test_a_checkout_that_waits_too_long_fails_with_a_connection_error(
    pool: WaitingConnectionPool,
) -> None:
    pool.timeout = 0.05
    held = [await pool.get_connection(), await pool.get_connection()]
    with pytest.raises(RedisConnectionError, match="No connection available"):
        await pool.get_connection()
    assert not pool._waiters
    for connection in held:
        await pool.release(connection)
    assert _counts(pool) == (2, 0)


async def test_a_waiter_cancelled_after_the_hand_over_passes_the_connection_on(
    pool: WaitingConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    first = asyncio.create_task(pool.get_connection())
    second = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.01)
    await pool.release(held[0])  # handed to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    connection = await asyncio.wait_for(second, 1)
    assert connection is held[0]
    await pool.release(connection)
    await pool.release(held[1])
    assert _counts(pool) == (2, 0)
    assert not pool._waiters


async def test_a_cancelled_waiter_leaves_the_queue(pool: WaitingConnectionPool) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    waiter = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not pool._waiters
    for connection in held:
        await pool.release(connection)
    assert _counts(pool) == (2, 0)


async def test_a_connection_left_with_unread_data_is_reconnected_before_reuse(
    pool: WaitingConnectionPool,
) -> None:
    connection = await pool.get_connection()
    await connection.send_command("ECHO", "stale")  # its reply is never read
    await asyncio.sleep(0.05)
    await pool.release(connection)
    again = await pool.get_connection()
    assert again is connection
    await again.send_command("ECHO", "fresh")
    assert await again.read_response() == "fresh"
    await pool.release(again)


async def test_an_exchange_past_the_timeout_fails_and_the_next_one_is_clean() -> None:
    """A command Redis has not answered within ``redis_timeout_seconds`` fails with a
    storage error; its connection is dropped, so the late reply never reaches anyone."""
    settings = Settings(redis_timeout_seconds=0.2, redis_max_connections=1)
    backend = RedisBackend.from_url(require_redis(), settings=settings)
    try:
        await backend.initialize()
        started = asyncio.get_running_loop().time()
        with pytest.raises(StorageUnavailableError, match=r"no reply within 0\.2 s"):
            await backend._call("BLPOP", "fiml:test:never-filled", 2)
        assert asyncio.get_running_loop().time() - started < 1.5
        assert await backend._call("ECHO", "after") == "after"
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
            await asyncio.wait_for(backend.initialize(), 5)
    finally:
        await backend.close()
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
