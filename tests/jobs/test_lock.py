"""The per-job Redis lock: a concurrent run is skipped and does nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import redis.asyncio as redis

from fiml.sessions.joblock import JOB_LOCK_PREFIX, RedisJobLock
from fiml.sessions.jobs import CLEANUP_JOB, CleanupStats, run_job, session_jobs
from fiml.sessions.models import SessionType
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session


async def test_a_held_lock_makes_the_second_run_skip(jobs_redis: str) -> None:
    first, second = RedisJobLock.from_url(jobs_redis), RedisJobLock.from_url(jobs_redis)
    try:
        async with first.hold("job") as mine:
            async with second.hold("job") as theirs:
                assert (mine, theirs) == (True, False)
            async with second.hold("other-job") as other:
                assert other is True
        async with second.hold("job") as after_release:
            assert after_release is True
    finally:
        await first.close()
        await second.close()


async def test_the_lock_expires_when_its_holder_dies(jobs_redis: str) -> None:
    crashed = RedisJobLock.from_url(jobs_redis, ttl_seconds=0.3)
    survivor = RedisJobLock.from_url(jobs_redis)
    client = redis.Redis.from_url(jobs_redis)
    try:
        holding = crashed.hold("job")
        assert await holding.__aenter__() is True
        assert await client.exists(JOB_LOCK_PREFIX + "job") == 1
        async with asyncio.timeout(5):
            while await client.exists(JOB_LOCK_PREFIX + "job"):
                await asyncio.sleep(0.05)
        async with survivor.hold("job") as taken:
            assert taken is True
    finally:
        await client.aclose()
        await crashed.close()
        await survivor.close()


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
    holder, runner = RedisJobLock.from_url(jobs_redis), RedisJobLock.from_url(jobs_redis)
    try:
        async with holder.hold(CLEANUP_JOB):
            skipped = await run_job(cleanup, lock=runner)
        ran = await run_job(cleanup, lock=runner)
    finally:
        await holder.close()
        await runner.close()

    assert isinstance(skipped, CleanupStats)
    assert (skipped.skipped, skipped.archived, skipped.reason) == (
        True,
        0,
        "another run of this job holds its lock",
    )
    assert isinstance(ran, CleanupStats)
    assert (ran.skipped, ran.archived, ran.metrics_recorded) == (False, 1, 1)
