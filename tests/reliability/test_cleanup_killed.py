"""A cleanup process SIGKILLed in the middle of archiving: the next run finishes the job.

A separate OS process runs the cleanup job (``run_cleanup``) over many expired sessions on
Redis + PostgreSQL. Its link to PostgreSQL goes through a slow TCP proxy, so the job takes
seconds; the test watches the archive and kills the process with SIGKILL as soon as the
first (or the fourth) batch has landed. The next run must archive the rest: every session
exactly once in PostgreSQL with its exact query count and its analytics facts, none left in
Redis.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.sessions import SessionStore
from fiml.sessions.jobs import run_cleanup, run_metrics
from tests.conftest import require_postgres, settings_for
from tests.reliability.archive_checks import (
    archive_reader,
    archived_count,
    assert_archived_once,
    due_sessions,
    sessions_in_redis,
)
from tests.reliability.services import TcpProxy, wait_until

SESSIONS = 300
QUERIES = 2
BATCH = 20

CLEANUP = """
import asyncio, sys
from fiml.core.config import Settings
from fiml.sessions import SessionStore
from fiml.sessions.jobs import run_cleanup

async def main(database_url, redis_url, batch):
    settings = Settings(database_url=database_url, redis_url=redis_url)
    async with SessionStore(settings) as store:
        print(await run_cleanup(store, batch_size=batch))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """Redis + PostgreSQL, both emptied."""
    return await settings_for("redis+postgres", tmp_path)


@pytest.mark.parametrize("kill_after", [1, 3 * BATCH + 1], ids=["first-batch", "fourth-batch"])
@pytest.mark.timeout(180)
async def test_cleanup_killed_mid_archive_is_finished_by_the_next_run(
    settings: Settings, raw: redis.Redis, kill_after: int
) -> None:
    pg = await require_postgres()
    async with SessionStore(settings) as store, archive_reader(pg) as archive:
        ids = await due_sessions(store, SESSIONS, queries=QUERIES)

        async with TcpProxy.in_front_of(pg, delay=0.02) as slow_link:
            job = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-c", CLEANUP, slow_link.url_through(pg), str(settings.redis_url), str(BATCH)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:

                async def archiving() -> bool:
                    if job.returncode is not None:
                        raise AssertionError("the cleanup finished before it could be killed")
                    return await archived_count(archive) >= kill_after

                await wait_until(archiving, seconds=60, interval=0.005)
            finally:
                job.send_signal(signal.SIGKILL)
                await job.communicate()
            assert job.returncode == -signal.SIGKILL
        # The proxy is closed: nothing the killed process sent can still reach PostgreSQL.

        landed = await archived_count(archive)
        assert kill_after <= landed < SESSIONS
        assert len(await sessions_in_redis(raw)) >= SESSIONS - landed

        stats = await run_cleanup(store)
        assert stats.archived == SESSIONS - landed
        await run_metrics(store)  # facts for the sessions the killed run archived
        assert (await run_cleanup(store)).archived == 0

    await assert_archived_once(archive, raw, ids, queries=QUERIES)
