"""A real Celery worker subprocess on the real Redis broker runs each task on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from fiml.core.config import Settings
from fiml.core.redis_client import redis_client
from fiml.sessions.db import SessionRecord
from fiml.sessions.joblock import RedisJobLock
from fiml.sessions.jobs import CLEANUP_JOB, METRICS_JOB, RETENTION_JOB
from fiml.sessions.models import SessionType, utcnow
from fiml.sessions.store import SessionStore
from fiml.sessions.tasks import TASK_NAMES, create_celery_app
from tests.analytics.factories import finished_session, metric_rows
from tests.clock import MovableClock
from tests.conftest import (
    POSTGRES_URL,
    require_postgres,
    require_service,
    reset_postgres,
    sql_archive,
)
from tests.jobs.conftest import JOBS_REDIS_URL

RESULT_TIMEOUT = 30


def _flush_broker() -> None:
    import redis

    client = redis.Redis.from_url(JOBS_REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A worker subprocess on the test broker and PostgreSQL; yields a client app."""
    require_service("Redis", JOBS_REDIS_URL, 6379)
    asyncio.run(require_postgres())
    _flush_broker()
    workdir = tmp_path_factory.mktemp("worker")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env.update(FIML_DATABASE_URL=POSTGRES_URL, FIML_CELERY_BROKER_URL=JOBS_REDIS_URL)
    name = f"fiml-test-{uuid.uuid4().hex[:8]}@localhost"
    log = (workdir / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fiml.sessions.tasks", "worker",
         "--pool=solo", "--concurrency=1", "--loglevel=INFO", "-n", name,
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = create_celery_app(
        Settings(database_url=POSTGRES_URL, celery_broker_url=JOBS_REDIS_URL, redis_url=None)
    )
    try:
        deadline = time.monotonic() + 30
        while not client.control.ping(destination=[name], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not start:\n{(workdir / 'worker.log').read_text()}")
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        _flush_broker()


@pytest.fixture
async def pg_store(worker: Any, tmp_path: Path, clock: MovableClock) -> AsyncIterator[SessionStore]:
    """A store on the worker's (emptied) PostgreSQL database, on the ``clock`` fixture."""
    await reset_postgres(POSTGRES_URL)
    store = SessionStore(Settings(database_url=POSTGRES_URL, redis_url=None), clock=clock)
    await store.initialize()
    try:
        yield store
    finally:
        await store.shutdown()


async def run_task(client: Any, job: str) -> dict[str, Any]:
    result = client.send_task(TASK_NAMES[job])
    stats: dict[str, Any] = await asyncio.to_thread(result.get, timeout=RESULT_TIMEOUT)
    return stats


async def test_cleanup_task_archives_five_expired_sessions(
    worker: Any, pg_store: SessionStore, clock: MovableClock
) -> None:
    clock.move(-timedelta(hours=2))  # the worker's clock, the system's, finds these expired
    for n in range(5):
        await pg_store.create_session([f"S{n}"], SessionType.EQUITY, user_id="u", ttl_hours=1)
    clock.move(timedelta(hours=2))
    await pg_store.create_session(["KEEP"], SessionType.EQUITY, user_id="u", ttl_hours=1)

    stats = await run_task(worker, CLEANUP_JOB)

    assert (stats["job"], stats["skipped"]) == (CLEANUP_JOB, False)
    assert (stats["archived"], stats["metrics_recorded"]) == (5, 5)
    assert (stats["failed"], stats["quarantined"], stats["error"]) == (0, 0, None)
    assert await sql_archive(pg_store).count_sessions(archived=True) == 5
    assert await sql_archive(pg_store).count_sessions(archived=False) == 1
    assert await metric_rows(pg_store) == 5
    again = await run_task(worker, CLEANUP_JOB)
    assert (again["archived"], again["metrics_recorded"]) == (0, 0)


async def test_retention_task_deletes_old_archives_and_keeps_young_ones(
    worker: Any, pg_store: SessionStore
) -> None:
    ages: dict[int, list[uuid.UUID]] = {40: [], 31: [], 29: [], 1: []}
    for days in ages:
        for _ in range(2):
            session = finished_session(
                user="u", kind=SessionType.CRYPTO, assets=["BTC"],
                created_ago=timedelta(days=days + 1), lasted=timedelta(minutes=1),
                closed=True, archived=utcnow(),
            )  # fmt: skip
            await pg_store.backend.insert(session)
            ages[days].append(session.id)
    async with sql_archive(pg_store).engine.begin() as conn:
        for days, ids in ages.items():
            await conn.execute(
                update(SessionRecord)
                .where(SessionRecord.id.in_(ids))
                .values(archived_at=utcnow() - timedelta(days=days))
            )

    stats = await run_task(worker, RETENTION_JOB)

    assert (stats["job"], stats["deleted"], stats["retention_days"]) == (RETENTION_JOB, 4, 30.0)
    assert await sql_archive(pg_store).count_sessions(archived=True) == 4
    for days, ids in ages.items():
        found = [await pg_store.get_session(i) is not None for i in ids]
        assert found == [days < 30] * 2, days


async def test_metrics_task_records_archived_sessions_once(
    worker: Any, pg_store: SessionStore
) -> None:
    for n in range(4):
        await pg_store.backend.insert(
            finished_session(
                user="u", kind=SessionType.EQUITY, assets=[f"S{n}"],
                created_ago=timedelta(hours=2), lasted=timedelta(minutes=n + 1),
                closed=n % 2 == 0, archived=utcnow(),
            )
        )  # fmt: skip

    first = await run_task(worker, METRICS_JOB)
    second = await run_task(worker, METRICS_JOB)

    assert (first["job"], first["recorded"], second["recorded"]) == (METRICS_JOB, 4, 0)
    assert await metric_rows(pg_store) == 4


async def test_a_task_finding_the_lock_held_is_skipped(worker: Any, pg_store: SessionStore) -> None:
    await pg_store.backend.insert(
        finished_session(
            user="u", kind=SessionType.EQUITY, assets=["AAPL"],
            created_ago=timedelta(hours=1), lasted=timedelta(minutes=1), closed=False,
        )
    )  # fmt: skip
    client = redis_client(JOBS_REDIS_URL, Settings())
    try:
        async with RedisJobLock(client, settings=Settings()).hold(CLEANUP_JOB) as held:
            assert held
            skipped = await run_task(worker, CLEANUP_JOB)
    finally:
        await client.aclose()

    assert (skipped["skipped"], skipped["archived"]) == (True, 0)
    assert await sql_archive(pg_store).count_sessions(archived=True) == 0
    ran = await run_task(worker, CLEANUP_JOB)
    assert (ran["skipped"], ran["archived"]) == (False, 1)
