"""The job functions: exact statistics, idempotence, and concurrent runs counted once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import update

from fiml.core.config import Settings
from fiml.sessions.db import SessionRecord
from fiml.sessions.jobs import (
    CLEANUP_JOB,
    METRICS_JOB,
    RETENTION_JOB,
    CleanupStats,
    run_cleanup,
    run_metrics,
    run_retention,
    session_jobs,
)
from fiml.sessions.models import SessionType, utcnow
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session, metric_rows
from tests.conftest import sql_archive


async def add_expired(store: SessionStore, count: int, *, user: str = "u") -> list[UUID]:
    """Insert ``count`` sessions that expired unclosed, with a query type and an asset each."""
    ids = []
    for n in range(count):
        session = finished_session(
            user=user,
            kind=SessionType.EQUITY,
            assets=[f"S{n}"],
            created_ago=timedelta(hours=1),
            lasted=timedelta(minutes=5),
            closed=False,
            queries={"price": (1, 0)},
        )
        await store.backend.insert(session)
        ids.append(session.id)
    return ids


async def archive_without_facts(store: SessionStore, expected: int) -> None:
    """Archive what is due with analytics off, as before an upgrade or while it was off:
    the sessions are archived and no facts are recorded for them."""
    quiet = store.settings.model_copy(update={"session_enable_analytics": False})
    async with SessionStore(quiet) as other:
        report = await other.cleanup_expired_sessions()
    assert (report.archived, report.metrics_recorded) == (expected, 0)
    assert await metric_rows(store) == 0


async def set_archived_at(store: SessionStore, ids: list[UUID], days_ago: float) -> None:
    stamp = utcnow() - timedelta(days=days_ago)
    async with sql_archive(store).engine.begin() as conn:
        await conn.execute(
            update(SessionRecord).where(SessionRecord.id.in_(ids)).values(archived_at=stamp)
        )


async def test_archiving_records_the_facts_in_the_same_transaction(store: SessionStore) -> None:
    ids = await add_expired(store, 3)
    report = await store.cleanup_expired_sessions()
    assert (report.archived, report.metrics_recorded) == (3, 3)
    assert await metric_rows(store) == 3
    assert (await run_metrics(store)).recorded == 0  # nothing left for the daily backstop
    session = await store.create_session(["AAPL"], SessionType.EQUITY, user_id="u", ttl_hours=1)
    assert await store.archive_session(session.id)
    assert await metric_rows(store) == 4
    assert all([(await store.get_session(i)) is not None for i in ids])


async def test_cleanup_archives_and_records_each_session_once(store: SessionStore) -> None:
    await add_expired(store, 4)
    closed = await store.create_session(["AAPL"], SessionType.EQUITY, user_id="u", ttl_hours=1)
    await store.close_session(closed.id)
    running = await store.create_session(["MSFT"], SessionType.EQUITY, user_id="u", ttl_hours=1)

    first = await run_cleanup(store)
    second = await run_cleanup(store)

    assert (first.job, first.archived, first.metrics_recorded, first.skipped) == (
        CLEANUP_JOB,
        5,
        5,
        False,
    )
    assert (second.archived, second.metrics_recorded) == (0, 0)
    assert await sql_archive(store).count_sessions(archived=True) == 5
    still = await store.get_session(running.id)
    assert still is not None and not still.is_archived
    assert await metric_rows(store) == 5


async def test_cleanup_with_analytics_disabled_records_nothing_until_enabled(
    store_kind: str, tmp_path: Path, store: SessionStore
) -> None:
    off = SessionStore(store.settings.model_copy(update={"session_enable_analytics": False}))
    await off.initialize()
    try:
        await add_expired(off, 3)
        cleaned = await run_cleanup(off)
        skipped = await run_metrics(off)
    finally:
        await off.shutdown()

    assert (cleaned.archived, cleaned.metrics_recorded) == (3, 0)
    assert (skipped.skipped, skipped.recorded) == (True, 0)
    assert await metric_rows(store) == 0
    backfill = await run_metrics(store)
    assert (backfill.job, backfill.recorded) == (METRICS_JOB, 3)
    assert (await run_metrics(store)).recorded == 0
    assert await metric_rows(store) == 3


async def test_metrics_backfills_archived_sessions_without_facts(store: SessionStore) -> None:
    await add_expired(store, 6)
    await archive_without_facts(store, 6)

    first = await run_metrics(store)
    again = await run_metrics(store)

    assert (first.recorded, again.recorded) == (6, 0)
    assert await metric_rows(store) == 6


async def test_retention_deletes_only_archives_older_than_the_period(store: SessionStore) -> None:
    ids = await add_expired(store, 5)
    assert (await store.cleanup_expired_sessions()).archived == 5
    await set_archived_at(store, ids[:2], days_ago=40)
    await set_archived_at(store, ids[2:3], days_ago=31)
    await set_archived_at(store, ids[3:4], days_ago=29)

    result = await run_retention(store)

    assert (result.job, result.deleted, result.retention_days) == (RETENTION_JOB, 3, 30)
    assert [await store.get_session(i) is None for i in ids] == [True, True, True, False, False]
    assert (await run_retention(store)).deleted == 0
    assert (await run_retention(store, retention_days=28)).deleted == 1


@pytest.mark.parametrize("runs", [2, 4])
async def test_concurrent_cleanups_archive_and_count_each_session_once(
    store: SessionStore, runs: int
) -> None:
    await add_expired(store, 40)
    stores = [SessionStore(store.settings) for _ in range(runs)]
    await asyncio.gather(*(s.initialize() for s in stores))
    try:
        results = await asyncio.gather(*(run_cleanup(s, batch_size=3) for s in stores))
    finally:
        await asyncio.gather(*(s.shutdown() for s in stores))

    assert sum(r.archived for r in results) == 40
    assert sum(r.metrics_recorded for r in results) == 40
    assert await sql_archive(store).count_sessions(archived=True) == 40
    assert await metric_rows(store) == 40


async def test_concurrent_metric_backfills_count_each_session_once(store: SessionStore) -> None:
    await add_expired(store, 30)
    await archive_without_facts(store, 30)
    stores = [SessionStore(store.settings) for _ in range(3)]
    await asyncio.gather(*(s.initialize() for s in stores))
    try:
        results = await asyncio.gather(*(run_metrics(s, batch_size=3) for s in stores))
    finally:
        await asyncio.gather(*(s.shutdown() for s in stores))

    assert sum(r.recorded for r in results) == 30
    assert await metric_rows(store) == 30


def test_jobs_take_their_intervals_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        session_cleanup_interval_minutes=15,
    )
    jobs = {job.name: job for job in session_jobs(SessionStore(settings))}

    assert {name: job.interval for name, job in jobs.items()} == {
        CLEANUP_JOB: timedelta(minutes=15),
        RETENTION_JOB: timedelta(days=1),
        METRICS_JOB: timedelta(days=1),
    }
    assert jobs[CLEANUP_JOB].stats_type is CleanupStats
