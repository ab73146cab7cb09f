"""The per-job Redis lock: a concurrent run is skipped and does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.core.redis_client import redis_client
from fiml.sessions.backends.redis_keys import RedisKeyspace
from fiml.sessions.joblock import RedisJobLock
from fiml.sessions.jobs import CLEANUP_JOB, CleanupStats, run_job, session_jobs
from fiml.sessions.models import SessionType
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session

SETTINGS = Settings()
LOCK_KEY = RedisKeyspace(SETTINGS.redis_key_prefix).job_lock("job")


@asynccontextmanager
async def locks(url: str, *ttls: float) -> AsyncIterator[list[RedisJobLock]]:
    """One lock per ``ttls``, each on a Redis client of its own, as in separate processes."""
    clients = [redis_client(url, SETTINGS) for _ in ttls]
    pairs = zip(clients, ttls, strict=True)
    try:
        yield [RedisJobLock(client, settings=SETTINGS, ttl_seconds=ttl) for client, ttl in pairs]
    finally:
        for client in clients:
            await client.aclose()


async def test_a_held_lock_makes_the_second_run_skip(jobs_redis: str) -> None:
    async with locks(jobs_redis, 600, 600) as (first, second):
        async with first.hold("job") as mine:
            async with second.hold("job") as theirs:
                assert (mine, theirs) == (True, False)
            async with second.hold("other-job") as other:
                assert other is True
        async with second.hold("job") as after_release:
            assert after_release is True


async def test_the_lock_expires_when_its_holder_dies(jobs_redis: str) -> None:
    client = redis.Redis.from_url(jobs_redis)
    try:
        async with locks(jobs_redis, 0.3, 600) as (crashed, survivor):
            holding = crashed.hold("job")
            assert await holding.__aenter__() is True
            assert await client.exists(LOCK_KEY) == 1
            async with asyncio.timeout(5):
                while await client.exists(LOCK_KEY):
                    await asyncio.sleep(0.05)
            async with survivor.hold("job") as taken:
                assert taken is True
    finally:
        await client.aclose()


async def test_a_skipped_cleanup_archives_nothing(store: SessionStore, jobs_redis: str) -> None:
    expired = finished_session(
        user="u",
        kind=SessionType.EQUITY,
        assets=["AAPL"],
        created_ago=timedelta(hours=1),
        lasted=timedelta(minutes=1),
        closed=False,
    )
    await store.backend.insert(expired)
    cleanup = {job.name: job for job in session_jobs(store)}[CLEANUP_JOB]
    async with locks(jobs_redis, 600, 600) as (holder, runner):
        async with holder.hold(CLEANUP_JOB):
            skipped = await run_job(cleanup, lock=runner)
        ran = await run_job(cleanup, lock=runner)

    assert isinstance(skipped, CleanupStats)
    assert (skipped.skipped, skipped.archived, skipped.reason) == (
        True,
        0,
        "another run of this job holds its lock",
    )
    assert isinstance(ran, CleanupStats)
    assert (ran.skipped, ran.archived, ran.metrics_recorded) == (False, 1, 1)
