"""The Redis backend on a real Redis Cluster (3 masters, 3 replicas, tests/redis_cluster.py).

What the cluster adds to single Redis: each session's keys in one slot, the index shards
spread over every master, many processes writing through redis-py's ``RedisCluster``
without a lost write, cleanup walking the shards on every master, and WAIT for replicas.
The contract suite runs here too (``ON_CLUSTER`` in test_store_contract.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import RedisCluster

from fiml.core.config import CLUSTER_REDIS_INDEX_SHARDS, Settings
from fiml.core.errors import StorageUnavailableError
from fiml.core.redis_client import open_redis
from fiml.market.service import MarketData
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.backends import build_backends
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.redis import RedisBackend
from fiml.sessions.joblock import RedisJobLock
from fiml.sessions.jobs import CLEANUP_JOB, run_cleanup
from fiml.sessions.models import SessionStatus
from tests.conftest import CLUSTER_KIND, settings_for, sql_archive
from tests.market.test_cache import make_quote
from tests.reliability.archive_checks import due_sessions
from tests.sessions.concurrent_writers import run_workers

KEYS = rk.RedisKeyspace(shards=CLUSTER_REDIS_INDEX_SHARDS)


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """The Redis Cluster + PostgreSQL deployment, both emptied."""
    return await settings_for(CLUSTER_KIND, tmp_path)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SessionStore]:
    async with SessionStore(settings) as session_store:
        assert isinstance(session_store.backend, RedisBackend)
        assert isinstance(session_store.backend.redis, RedisCluster)
        yield session_store


@pytest.fixture
async def cluster(settings: Settings) -> AsyncIterator[RedisCluster]:
    """A plain cluster client, to look at where keys live."""
    assert settings.redis_url is not None
    client = RedisCluster.from_url(settings.redis_url, decode_responses=True)
    await client.initialize()  # learn the slot map now: the tests look it up
    yield client
    await client.aclose()


async def every_key(cluster: RedisCluster) -> list[str]:
    """Every key on every master (a test may list keys; the product never does)."""
    replies = await cluster.keys("*", target_nodes=RedisCluster.PRIMARIES)
    return cast(list[str], replies)


def master_of(cluster: RedisCluster, key: str) -> str:
    node = cluster.get_node_from_key(key)
    assert node is not None
    return str(node.name)


async def test_every_key_of_a_session_is_in_one_slot(
    store: SessionStore, cluster: RedisCluster
) -> None:
    sessions = [await store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(8)]
    for session in sessions:
        await store.append_query(session.id, QueryRecord(query_type="price", cache_hit=False))
        await store.update_state(
            session.id, context={"a": 1}, preferences={"b": 2}, intermediate_results={"c": 3}
        )
        fresh = await store.get_session(session.id)
        assert fresh is not None
        fresh.state.set_metadata("d", 4)
        await store.update_session(session.id, fresh)
    stored = await every_key(cluster)
    slots_used: set[int] = set()
    for session in sessions:
        keys = [k for k in stored if f"{{{session.id}}}" in k]
        assert sorted(keys) == sorted(KEYS.session_keys(session.id))
        slots = {cluster.keyslot(k) for k in keys}
        assert len(slots) == 1
        slots_used |= slots
    assert len(slots_used) == len(sessions)  # distinct sessions: distinct slots (all but surely)


async def test_index_shards_spread_over_every_master(
    store: SessionStore, cluster: RedisCluster
) -> None:
    masters = {node.name for node in cluster.get_primaries()}
    assert len(masters) == 3
    assert {master_of(cluster, key) for key in KEYS.expiry_shards()} == masters
    for user in ("u1", "someone-else", "a:b"):
        assert {master_of(cluster, key) for key in KEYS.user_shards(user)} == masters

    # measured on the stored data: every master holds entries of both indexes
    for _ in range(60):
        await store.create_session(["AAPL"], "equity", user_id="u1")
    holding: dict[str, set[str]] = {"expiry": set(), "user": set()}
    for key in await every_key(cluster):
        if key.startswith("fiml:expiry:"):
            holding["expiry"].add(master_of(cluster, key))
        elif key.startswith("fiml:users:"):
            holding["user"].add(master_of(cluster, key))
    assert holding == {"expiry": masters, "user": masters}


@pytest.mark.timeout(240)
async def test_four_processes_of_250_writers_lose_nothing_on_the_cluster(
    store: SessionStore, settings: Settings
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    await run_workers(settings, "append", session.id, processes=4, writers=250)

    loaded = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert loaded is not None
    history = loaded.state.history
    assert history.total_queries == len(history.queries) == 1000
    assert len({q.id for q in history.queries}) == 1000
    assert history.cache_hits == 4 * 84 == sum(q.cache_hit for q in history.queries)
    assert history.query_type_counts == {"t0": 500, "t1": 500}
    assert loaded.version == 1000


@pytest.mark.timeout(180)
async def test_cleanup_archives_every_due_session_from_every_shard(
    store: SessionStore, cluster: RedisCluster
) -> None:
    ids = await due_sessions(store, 120, queries=2, users=4)
    kept = await store.create_session(["AAPL"], "equity", user_id="u0")

    report = await store.cleanup_expired_sessions()

    assert (report.archived, report.failed, report.quarantined) == (120, 0, 0)
    assert await sql_archive(store).count_sessions(archived=True) == 120
    for sid in ids[:10]:
        archived = await store.get_session(sid, history_limit=ALL_QUERIES)
        assert archived is not None and archived.status is SessionStatus.ARCHIVED
        assert len(archived.state.history.queries) == 2
    left = await every_key(cluster)
    assert not [k for k in left if ":s:{" in k and str(kept.id) not in k]
    index_entries: list[Any] = []
    for key in KEYS.expiry_shards():
        index_entries += await cluster.zrange(key, 0, -1)
    assert index_entries == [str(kept.id)]
    listed = await store.list_user_sessions("u0", limit=100)
    assert [s.id for s in listed if s.status is SessionStatus.ACTIVE] == [kept.id]


async def test_a_page_merges_the_shards_newest_first(store: SessionStore) -> None:
    made = [await store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(23)]
    seen, cursor = [], None
    while True:
        page = await store.list_user_sessions_page("u1", limit=5, cursor=cursor)
        seen += [s.id for s in page.sessions]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [s.id for s in reversed(made)]


async def test_writes_wait_for_a_replica_when_asked(tmp_path: Path) -> None:
    settings = await settings_for(CLUSTER_KIND, tmp_path, redis_wait_replicas=1)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        await store.append_query(session.id, QueryRecord(query_type="price", cache_hit=False))
        await store.close_session(session.id)
        loaded = await store.get_session(session.id)
        assert loaded is not None and loaded.state.history.total_queries == 1


async def test_a_write_no_replica_can_confirm_in_time_fails_loudly(tmp_path: Path) -> None:
    """Each master has one replica: a write asked to reach two is not acknowledged."""
    settings = await settings_for(
        CLUSTER_KIND, tmp_path, redis_wait_replicas=2, redis_wait_timeout_seconds=0.05
    )
    async with SessionStore(settings) as store:
        with pytest.raises(StorageUnavailableError, match="reached 1 of 2 replicas"):
            await store.create_session(["AAPL"], "equity", user_id="u1")


async def test_one_cluster_client_serves_sessions_job_locks_and_the_quote_cache(
    settings: Settings,
) -> None:
    """What ``fiml serve`` does with a cluster: one client, lent to every user of Redis."""
    async with open_redis(settings.redis_url, settings) as client:
        assert isinstance(client, RedisCluster)
        backend, archive = build_backends(settings, redis=client)
        async with SessionStore(settings, backend=backend, archive=archive) as store:
            done = await store.create_session(["MSFT"], "equity", user_id="u1")
            await store.close_session(done.id)
            lock = RedisJobLock(client, settings=settings)
            async with lock.hold(CLEANUP_JOB) as held:
                assert held
                async with lock.hold(CLEANUP_JOB) as again:
                    assert not again  # held once across the cluster
                assert (await run_cleanup(store)).archived == 1
        market = MarketData.live(client)
        async with market:
            await market.cache.set("equity:yahoo:AAPL:", make_quote())
            assert await market.cache.get("equity:yahoo:AAPL:") is not None
        assert await client.ping()  # closing the store and the market left the client open
