"""PostgreSQL goes away while cleanup archives: nothing is lost, nothing doubled.

PostgreSQL is reached through a TCP proxy that the test cuts (the shared server itself is
never touched). Cleanup must report the sessions it could not archive as failed, naming
PostgreSQL; they stay in Redis, readable with their whole history; and the next cleanup,
once PostgreSQL is back, archives every one of them exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.sessions import ALL_QUERIES, SessionStore
from fiml.sessions.jobs import run_cleanup, run_metrics
from fiml.sessions.models import SessionStatus
from tests.conftest import require_postgres, settings_for
from tests.reliability.archive_checks import (
    archive_reader,
    archived_count,
    assert_archived_once,
    due_sessions,
    sessions_in_redis,
)
from tests.reliability.services import TcpProxy, wait_until

QUERIES = 3


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """Redis + PostgreSQL, both emptied (the store below reaches PostgreSQL via a proxy)."""
    return await settings_for("redis+postgres", tmp_path)


async def snapshots(store: SessionStore, ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """Everything stored about each session, and its status, read through the store."""
    found = {}
    for sid in ids:
        session = await store.get_session(sid, history_limit=ALL_QUERIES)
        assert session is not None
        found[sid] = {**session.to_dict(), "status": session.status.value}
    return found


def without_volatile(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot less what reading it may change (access time)."""
    return {k: v for k, v in snapshot.items() if k != "last_accessed_at"}


async def test_cleanup_with_postgres_down_fails_clearly_and_the_next_run_archives_all(
    settings: Settings, raw: redis.Redis
) -> None:
    pg = await require_postgres()
    async with TcpProxy.in_front_of(pg) as proxy, archive_reader(pg) as archive:
        through_proxy = settings.model_copy(update={"database_url": proxy.url_through(pg)})
        async with SessionStore(through_proxy) as store:
            ids = await due_sessions(store, 20, queries=QUERIES)
            before = await snapshots(store, ids)

            await proxy.cut()
            for _ in range(2):  # each run reports the sessions it could not archive
                stats = await run_cleanup(store)
                assert (stats.archived, stats.failed, stats.quarantined) == (0, 20, 0)
                assert "postgresql is unavailable" in (stats.error or "")

            assert await archived_count(archive) == 0
            assert await sessions_in_redis(raw) == set(ids)
            during = await snapshots(store, ids)
            assert {s["status"] for s in during.values()} == {SessionStatus.EXPIRED.value}
            assert {k: without_volatile(v) for k, v in during.items()} == {
                k: without_volatile(v) for k, v in before.items()
            }

            await proxy.restore()
            assert (await run_cleanup(store)).archived == 20
            assert (await run_cleanup(store)).archived == 0
            after = await snapshots(store, ids)

        await assert_archived_once(archive, raw, ids, queries=QUERIES)
    for sid, snapshot in after.items():
        assert snapshot["status"] == SessionStatus.ARCHIVED.value
        assert snapshot["state"]["history"] == before[sid]["state"]["history"]
        assert snapshot["state"]["context"] == before[sid]["state"]["context"]


async def test_postgres_cut_in_the_middle_of_cleanup_loses_and_doubles_nothing(
    settings: Settings, raw: redis.Redis
) -> None:
    pg = await require_postgres()
    total = 40
    # A slow link, so that cleanup is still running when the first batch lands.
    async with TcpProxy.in_front_of(pg) as proxy, archive_reader(pg) as archive:
        through_proxy = settings.model_copy(update={"database_url": proxy.url_through(pg)})
        async with SessionStore(through_proxy) as store:
            ids = await due_sessions(store, total, queries=QUERIES)
            proxy.delay = 0.02

            async def some_archived() -> bool:
                return await archived_count(archive) > 0

            async def cut_once_archiving() -> None:
                await wait_until(some_archived, seconds=30, interval=0.005)
                await proxy.cut()

            cutter = asyncio.create_task(cut_once_archiving())
            stats = await run_cleanup(store, batch_size=4)
            await cutter
            assert stats.failed > 0 and "postgresql" in (stats.error or "")

            landed = await archived_count(archive)
            assert 0 < landed < total
            still_active = await sessions_in_redis(raw)
            assert len(still_active) >= total - landed
            for sid in still_active:
                session = await store.get_session(sid, history_limit=ALL_QUERIES)
                assert session is not None and session.status is SessionStatus.EXPIRED
                history = session.state.history
                assert history.total_queries == len(history.queries) == QUERIES

            proxy.delay = 0.0
            await proxy.restore()
            assert (await run_cleanup(store)).archived == total - landed
            await run_metrics(store)  # facts for the batches of the run that was cut

        await assert_archived_once(archive, raw, ids, queries=QUERIES)
