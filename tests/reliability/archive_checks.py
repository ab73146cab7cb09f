"""Sessions made due for archival, and what the archive and Redis hold afterwards.

The checks read PostgreSQL and Redis directly, never through the store under test, so
they still see the truth while that store's own path to a service is cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import redis.asyncio as redis
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.db import QueryRow, SessionMetrics, SessionRecord, create_engine

SESSIONS = cast(Table, SessionRecord.__table__)
QUERIES = cast(Table, QueryRow.__table__)
METRICS = cast(Table, SessionMetrics.__table__)
CREATE_CONCURRENCY = 50
KEYS = rk.RedisKeyspace()
"""The keys of the tests' deployment (the default key prefix)."""


def query(n: int) -> QueryRecord:
    """A tracked query; every third one a cache hit."""
    return QueryRecord(
        query_type="search_by_symbol" if n % 2 else "search_by_coin",
        parameters={"symbol": f"S{n}"},
        result_summary=f"S{n}: 1.0",
        cache_hit=n % 3 == 0,
    )


async def due_sessions(
    store: SessionStore, count: int, *, queries: int, users: int = 3
) -> list[UUID]:
    """``count`` sessions with ``queries`` queries each, all expired when this returns.

    They are filled first and then ended, by an ordinary ``update_session`` setting an
    expiry that has come (the store ends such a session at the write), so filling many of
    them cannot race their expiry, and no one waits for it: they are due at once for any
    cleanup, in this process or another.
    """
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def make(i: int) -> UUID:
        async with gate:
            session = await store.create_session(
                ["AAPL", "BTC"], "comparative", user_id=f"u{i % users}"
            )
            for n in range(queries):
                await store.append_query(session.id, query(n))
            await store.update_state(session.id, context={"note": f"session {i}"})
            return session.id

    ids = list(await asyncio.gather(*(make(i) for i in range(count))))

    async def expire(session_id: UUID) -> None:
        async with gate:
            session = await store.get_session(session_id, history_limit=0)
            assert session is not None
            session.expires_at = store.now()
            await store.update_session(session_id, session)

    await asyncio.gather(*(expire(sid) for sid in ids))
    return ids


@dataclass(frozen=True)
class ArchivedRow:
    """One session as the archive holds it."""

    total_queries: int
    query_rows: int
    archived: bool
    metrics_rows: int


@asynccontextmanager
async def archive_reader(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine straight to PostgreSQL, bypassing any proxy the store goes through."""
    engine = create_engine(url, pool_size=2, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


async def archived_count(engine: AsyncEngine) -> int:
    """Sessions in the archive."""
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(SESSIONS).where(SESSIONS.c.archived_at.is_not(None))
        return int((await conn.execute(stmt)).scalar_one())


async def archive_contents(engine: AsyncEngine) -> dict[UUID, ArchivedRow]:
    """Every session row with its counters, its query rows and its analytics rows."""
    query_rows = (
        select(QUERIES.c.session_id, func.count().label("n"))
        .group_by(QUERIES.c.session_id)
        .subquery()
    )
    metric_rows = (
        select(METRICS.c.session_id, func.count().label("n"))
        .group_by(METRICS.c.session_id)
        .subquery()
    )
    stmt = (
        select(
            SESSIONS.c.id,
            SESSIONS.c.total_queries,
            SESSIONS.c.archived_at,
            func.coalesce(query_rows.c.n, 0),
            func.coalesce(metric_rows.c.n, 0),
        )
        .outerjoin(query_rows, query_rows.c.session_id == SESSIONS.c.id)
        .outerjoin(metric_rows, metric_rows.c.session_id == SESSIONS.c.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return {
        sid: ArchivedRow(total, n_queries, archived_at is not None, n_metrics)
        for sid, total, archived_at, n_queries, n_metrics in rows
    }


async def sessions_in_redis(raw: redis.Redis) -> set[UUID]:
    """Sessions whose meta hash is in Redis (a test may scan; the product never does)."""
    metas = [key async for key in raw.scan_iter(match="fiml:s:*:meta", count=1000)]
    return {UUID(str(key).split("{", 1)[1].split("}", 1)[0]) for key in metas}


async def assert_archived_once(
    engine: AsyncEngine, raw: redis.Redis, ids: list[UUID], *, queries: int
) -> None:
    """Each session in the archive exactly once with its whole history; none left in Redis."""
    contents = await archive_contents(engine)
    assert set(contents) == set(ids)
    expected = ArchivedRow(total_queries=queries, query_rows=queries, archived=True, metrics_rows=1)
    wrong: dict[UUID, Any] = {sid: row for sid, row in contents.items() if row != expected}
    assert wrong == {}
    assert await sessions_in_redis(raw) == set()
    assert [await raw.zcard(shard) for shard in KEYS.expiry_shards()] == [0] * KEYS.shards
