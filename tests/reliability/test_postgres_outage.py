"""PostgreSQL goes away while cleanup archives: nothing is lost, nothing doubled.

PostgreSQL is reached through a TCP proxy that the test cuts (the shared server itself is
never touched). Cleanup must report the sessions it could not archive as failed, naming
PostgreSQL; they stay in Redis, readable with their whole history; and the next cleanup,
once PostgreSQL is back, archives every one of them exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.core.errors import StorageUnavailableError
from fiml.sessions import ALL_QUERIES, SessionStore
from fiml.sessions.jobs import run_cleanup, run_metrics
from fiml.sessions.models import QueryRecord, SessionStatus
from tests.clock import MovableClock
from tests.conftest import require_postgres, settings_for
from tests.reliability.archive_checks import (
    KEYS,
    archive_reader,
    archived_count,
    assert_archived_once,
    due_sessions,
    sessions_in_redis,
)
from tests.reliability.services import TcpProxy, wait_until

QUERIES = 3


def query_record() -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": "AAPL"})


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


async def test_postgres_down_longer_than_the_grace_period_loses_nothing(
    settings: Settings, raw: redis.Redis
) -> None:
    """Before, Redis's backstop TTL (expiry + grace) deleted sessions the archive never got."""
    pg = await require_postgres()
    grace = timedelta(hours=settings.session_archive_grace_hours)
    clock = MovableClock()
    async with TcpProxy.in_front_of(pg) as proxy, archive_reader(pg) as archive:
        through_proxy = settings.model_copy(update={"database_url": proxy.url_through(pg)})
        async with SessionStore(through_proxy, clock=clock) as store:
            ids = await due_sessions(store, 30, queries=QUERIES)
            await proxy.cut()
            clock.move(3 * grace)  # the outage outlasts the grace period three times over
            stats = await run_cleanup(store)
            assert (stats.archived, stats.failed) == (0, 30)
            # Nor can Redis drop them on its own clock: no key of theirs carries a TTL
            # (PTTL is -1 for a key without one, -2 for a key the session has not used).
            ttls = [await raw.pttl(key) for sid in ids for key in KEYS.session_keys(sid)]
            assert -1 in ttls and all(ttl < 0 for ttl in ttls)
            assert await sessions_in_redis(raw) == set(ids)

            await proxy.restore()
            assert (await run_cleanup(store)).archived == 30
        await assert_archived_once(archive, raw, ids, queries=QUERIES)


@pytest.mark.parametrize("deployment", ["postgres", "redis+postgres"])
async def test_a_failed_archive_session_leaves_the_session_as_it_was(
    tmp_path: Path, raw: redis.Redis, deployment: str
) -> None:
    pg = await require_postgres()
    settings = await settings_for(deployment, tmp_path)
    async with TcpProxy.in_front_of(pg) as proxy:
        through_proxy = settings.model_copy(update={"database_url": proxy.url_through(pg)})
        async with SessionStore(through_proxy) as store:
            session = await store.create_session(["AAPL"], "equity", user_id="u1")
            await store.append_query(session.id, query_record())
            [before] = (await snapshots(store, [session.id])).values()

            await proxy.cut()
            with pytest.raises(StorageUnavailableError):
                await store.archive_session(session.id)
            await proxy.restore()

            [after] = (await snapshots(store, [session.id])).values()
            assert without_volatile(after) == without_volatile(before)
            assert after["status"] == SessionStatus.ACTIVE.value
            await store.append_query(session.id, query_record())  # still takes writes
            assert await store.archive_session(session.id)
            archived = await store.get_session(session.id, history_limit=ALL_QUERIES)
            assert archived is not None and archived.is_archived
            assert archived.state.history.total_queries == 2
