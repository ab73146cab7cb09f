"""A Redis that is up but refuses writes: full to its ``maxmemory``, or its snapshot failed.

Against a private ``redis-server`` (the shared one is never touched). What a user may rely on:

- a refused write is a :class:`StorageRefusedError` naming redis, never a redis-py exception,
  and it changes nothing: no session is left half-written, an acknowledged query stays;
- reads still work while Redis is full;
- cleanup still archives the expired sessions of a full Redis, and so frees its memory: a
  full Redis is not stuck full (the archival read freezes a session, a write Redis refuses
  when full unless the script allows it);
- a Redis that stopped writes after a failed snapshot (MISCONF) is refused the same way.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.core.errors import StorageRefusedError
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.models import SessionType
from tests.clock import MovableClock
from tests.conftest import require_postgres, reset_postgres
from tests.reliability.redis_invariants import session_violations
from tests.reliability.services import PrivateRedis

MAX_SESSIONS = 20_000
"""A bound on the filling loop: a few megabytes of maxmemory fill well before it."""
FULL = ("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")


@pytest.fixture
async def pg() -> str:
    """The test PostgreSQL database, emptied."""
    url = await require_postgres()
    await reset_postgres(url)
    return url


def query(n: int) -> QueryRecord:
    return QueryRecord(
        query_type="price", parameters={"symbol": "AAPL", "n": n}, result_summary="x" * 300
    )


async def fill(store: SessionStore) -> tuple[dict[UUID, UUID], StorageRefusedError]:
    """Open sessions with one query each until Redis refuses; the acknowledged ones and the
    refusal. A session created but refused its query stays, with no query."""
    acked: dict[UUID, UUID] = {}
    for n in range(MAX_SESSIONS):
        try:
            session = await store.create_session(["AAPL"], SessionType.EQUITY, user_id="alice")
        except StorageRefusedError as exc:
            return acked, exc
        record = query(n)
        try:
            await store.append_query(session.id, record, context={"note": "y" * 500})
        except StorageRefusedError as exc:
            reread = await store.get_session(session.id, history_limit=ALL_QUERIES)
            assert reread is not None
            assert reread.state.history.queries == [] and reread.state.context == {}
            return acked, exc
        acked[session.id] = record.id
    pytest.fail(f"Redis never filled up in {MAX_SESSIONS} sessions")


@pytest.mark.timeout(180)
async def test_a_full_redis_refuses_writes_typed_keeps_reads_and_cleanup_frees_it(
    tmp_path: Path, pg: str
) -> None:
    clock = MovableClock()
    async with PrivateRedis(tmp_path, extra_args=FULL) as server:
        raw = redis.Redis.from_url(server.url, decode_responses=True)
        settings = Settings(database_url=pg, redis_url=server.url)
        async with SessionStore(settings, clock=clock) as store:
            acked, refusal = await fill(store)
            assert refusal.backend == "redis"
            assert "out of memory" in str(refusal)
            assert len(acked) > 10
            # Right at the limit a small write may still fit now and then; hold Redis well
            # over it, so that every write below is refused.
            await raw.config_set("maxmemory", "1mb")

            some = next(iter(acked))
            with pytest.raises(StorageRefusedError):
                await store.append_query(some, query(-1))
            with pytest.raises(StorageRefusedError):
                await store.close_session(some)
            before = await store.get_session(some, history_limit=ALL_QUERIES)
            assert before is not None
            assert [q.id for q in before.state.history.queries] == [acked[some]]
            assert before.closed_at is None
            listed = await store.list_user_sessions("alice", limit=10)
            assert len(listed) == 10
            assert await session_violations(raw) == []

            full_bytes = (await raw.info("memory"))["used_memory"]
            clock.move(timedelta(days=2))
            report = await store.cleanup_expired_sessions()
            assert report.failed == 0 and report.quarantined == 0
            assert report.archived >= len(acked)
            assert (await raw.info("memory"))["used_memory"] < full_bytes

            # Under the limit it filled up to, the memory freed takes new sessions again.
            await raw.config_set("maxmemory", FULL[1])

            fresh = await store.create_session(["MSFT"], SessionType.EQUITY, user_id="alice")
            await store.append_query(fresh.id, query(0))
            for sid, qid in acked.items():
                archived = await store.get_session(sid, history_limit=ALL_QUERIES)
                assert archived is not None and archived.archived_at is not None
                assert [q.id for q in archived.state.history.queries] == [qid]
            assert await session_violations(raw) == []
        await raw.aclose()


@pytest.mark.timeout(120)
async def test_a_redis_whose_snapshot_failed_refuses_writes_typed(tmp_path: Path, pg: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    save_points = ("--save", "3600 1", "--stop-writes-on-bgsave-error", "yes", "--dir", str(data))
    async with PrivateRedis(tmp_path, extra_args=save_points) as server:
        raw = redis.Redis.from_url(server.url, decode_responses=True)
        settings = Settings(database_url=pg, redis_url=server.url)
        async with SessionStore(settings) as store:
            session = await store.create_session(["AAPL"], SessionType.EQUITY, user_id="alice")
            # A snapshot that cannot be written: its directory is gone.
            shutil.rmtree(data)
            await raw.bgsave()
            for _ in range(100):
                info = await raw.info("persistence")
                if info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "err":
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the snapshot did not fail")

            with pytest.raises(StorageRefusedError, match="MISCONF"):
                await store.append_query(session.id, query(0))
            with pytest.raises(StorageRefusedError, match="MISCONF"):
                await store.create_session(["MSFT"], SessionType.EQUITY, user_id="alice")
            unchanged = await store.get_session(session.id, history_limit=ALL_QUERIES)
            assert unchanged is not None and unchanged.state.history.queries == []
            assert await session_violations(raw) == []
        await raw.aclose()
