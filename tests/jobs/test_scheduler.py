"""The in-process scheduler runs jobs on their intervals, survives failures, stops cleanly."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta

import pytest

from fiml.sessions.jobs import CLEANUP_JOB, CleanupStats, Job, JobStats, run_cleanup
from fiml.sessions.models import SessionType, utcnow
from fiml.sessions.scheduler import JobScheduler
from fiml.sessions.store import SessionStore
from tests.clock import MovableClock

TICK = timedelta(milliseconds=100)


def counting_job(name: str, interval: timedelta, starts: list[float]) -> Job:
    async def run() -> JobStats:
        starts.append(time.monotonic())
        return JobStats(job=name, started_at=utcnow())

    return Job(name, interval, run)


async def test_cleanup_runs_on_its_interval_and_archives_what_expires(
    store: SessionStore, clock: MovableClock
) -> None:
    session = await store.create_session(["AAPL"], SessionType.EQUITY, user_id="u", ttl_hours=1)
    results: list[CleanupStats] = []
    archived = asyncio.Event()

    def seen(stats: JobStats) -> None:
        assert isinstance(stats, CleanupStats)
        results.append(stats)
        if len(results) == 1:
            clock.move(timedelta(hours=2))  # the session expires between the first runs
        if stats.archived:
            archived.set()

    async def cleanup() -> JobStats:
        return await run_cleanup(store)

    scheduler = JobScheduler([Job(CLEANUP_JOB, TICK, cleanup, CleanupStats)], on_result=seen)
    async with scheduler:
        async with asyncio.timeout(10):
            await archived.wait()

    assert not scheduler.running
    assert results[0].archived == 0, "the first run happens at start, before expiry"
    assert [r.archived for r in results].count(1) == 1
    assert sum(r.metrics_recorded for r in results) == 1
    reloaded = await store.get_session(session.id)
    assert reloaded is not None and reloaded.is_archived


async def test_runs_are_an_interval_apart_and_stop_when_stopped() -> None:
    starts: list[float] = []
    third = asyncio.Event()
    scheduler = JobScheduler(
        [counting_job("tick", TICK, starts)],
        on_result=lambda _stats: third.set() if len(starts) == 3 else None,
    )

    await scheduler.start()
    async with asyncio.timeout(10):
        await third.wait()
    await scheduler.stop()
    runs_at_stop = len(starts)
    await asyncio.sleep(3 * TICK.total_seconds())

    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= TICK.total_seconds() * 0.95 for gap in gaps), gaps
    assert len(starts) == runs_at_stop
    assert not scheduler.running


async def test_a_failing_run_is_logged_and_the_job_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    recovered = asyncio.Event()

    async def flaky() -> JobStats:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return JobStats(job="flaky", started_at=utcnow())

    scheduler = JobScheduler([Job("flaky", TICK, flaky)], on_result=lambda _s: recovered.set())
    async with scheduler:
        async with asyncio.timeout(10):
            await recovered.wait()

    assert scheduler.failures == {"flaky": 1}
    assert scheduler.last_results["flaky"].job == "flaky"
    assert "background job flaky failed" in caplog.text
    assert "database went away" in caplog.text


async def test_stop_lets_a_run_finish_then_cancels_after_the_grace_period() -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow() -> JobStats:
        started.set()
        await finish.wait()
        finished.append("slow")
        return JobStats(job="slow", started_at=utcnow())

    stop_called = asyncio.Event()

    async def stop_politely() -> None:
        stop_called.set()
        await polite.stop()

    polite = JobScheduler([Job("slow", TICK, slow)], grace_seconds=5)
    await polite.start()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(stop_politely())
    # This test wakes only once stop() has suspended, waiting for the run: the run is
    # released after the stop was requested.
    await asyncio.wait_for(stop_called.wait(), 5)
    finish.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == ["slow"]

    started.clear()
    finish.clear()
    impatient = JobScheduler([Job("slow", TICK, slow)], grace_seconds=0.05)
    await impatient.start()
    await asyncio.wait_for(started.wait(), 5)
    async with asyncio.timeout(5):
        await impatient.stop()
    assert finished == ["slow"], "the hung run was cancelled, not completed"
    assert not impatient.running


async def test_without_run_at_start_the_first_run_waits_one_interval() -> None:
    starts: list[float] = []
    ran = asyncio.Event()
    begun = time.monotonic()
    scheduler = JobScheduler(
        [counting_job("later", TICK, starts)], run_at_start=False, on_result=lambda _s: ran.set()
    )
    async with scheduler:
        async with asyncio.timeout(10):
            await ran.wait()

    assert starts[0] - begun >= TICK.total_seconds() * 0.95


def test_for_store_schedules_the_three_session_jobs(store: SessionStore) -> None:
    scheduler = JobScheduler.for_store(store)

    assert [(j.name, j.interval) for j in scheduler.jobs] == [
        ("cleanup_expired_sessions", timedelta(minutes=60)),
        ("delete_old_archived_sessions", timedelta(days=1)),
        ("generate_session_metrics", timedelta(days=1)),
    ]
