"""A master of a Redis Cluster killed under load, its replica promoted: what acknowledged
writes survive. Shared by the failover test and benchmarks/bench_cluster.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

from fiml.core.config import Settings
from fiml.core.errors import StorageUnavailableError
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.backends.redis import RedisBackend
from tests.redis_cluster import LocalCluster

__all__ = ["FailoverResult", "failover_under_load"]


@dataclass
class FailoverResult:
    """What the writers saw: writes acknowledged, acknowledged ones missing afterwards,
    and the writes that failed (not acknowledged), by error type."""

    acknowledged: int = 0
    lost: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    failed_after_promotion: int = 0
    promoted: bool = False

    @property
    def lost_on_victim(self) -> str:
        return f"{self.lost}/{self.acknowledged}"


async def failover_under_load(
    cluster: LocalCluster,
    settings: Settings,
    *,
    sessions: int = 30,
    before: float = 1.0,
    after: float = 1.5,
    cut_replication: bool = False,
    cut_seconds: float = 2.0,
) -> FailoverResult:
    """Writers append queries to ``sessions`` sessions nonstop; after ``before`` seconds
    the master of the first session is SIGKILLed (with ``cut_replication``, its replica
    is paused and its link dropped by the master ``cut_seconds`` first, so the master
    acknowledges writes no replica received, then resumed to be promoted); writing goes
    on ``after`` seconds past the promotion. Then every session is read back and each
    acknowledged query looked for."""
    result = FailoverResult()
    async with SessionStore(settings) as store:
        ids = [
            await store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(sessions)
        ]
        backend = store.backend
        assert isinstance(backend, RedisBackend)
        victim_node = backend.redis.get_node_from_key(backend.keys.meta_key(ids[0].id))  # type: ignore[union-attr]
        assert victim_node is not None
        victim = int(victim_node.port)
        replica = cluster.replica_of(victim)
        acknowledged: dict[UUID, set[UUID]] = {s.id: set() for s in ids}
        stop = asyncio.Event()

        async def writer(sid: UUID) -> None:
            while not stop.is_set():
                query = QueryRecord(query_type="price", cache_hit=False)
                try:
                    await store.append_query(sid, query)
                except Exception as exc:  # every failure is an unacknowledged write
                    result.failed[type(exc).__name__] += 1
                    result.failed_after_promotion += result.promoted
                    await asyncio.sleep(0.05)
                else:
                    acknowledged[sid].add(query.id)

        writers = [asyncio.create_task(writer(s.id)) for s in ids]

        await asyncio.sleep(before)
        if cut_replication:
            cluster.pause(replica)
            cluster.drop_replicas(victim)
            await asyncio.sleep(cut_seconds)
        cluster.kill(victim)
        if cut_replication:
            cluster.resume(replica)
        await asyncio.to_thread(cluster.wait_for_master, replica)
        result.promoted = True
        await asyncio.sleep(after)
        stop.set()
        await asyncio.gather(*writers)

        for sid, queries in acknowledged.items():
            stored = await _stored_queries(store, sid)
            result.acknowledged += len(queries)
            result.lost += len(queries - stored)
    return result


async def _stored_queries(store: SessionStore, sid: UUID) -> set[UUID]:
    """The ids of a session's stored queries; a read that meets the slot map of before the
    failover fails once (the client then rereads the map), so it is tried a few times."""
    for _ in range(20):
        try:
            loaded = await store.get_session(sid, history_limit=ALL_QUERIES)
        except StorageUnavailableError:
            await asyncio.sleep(0.2)
            continue
        assert loaded is not None
        return {q.id for q in loaded.state.history.queries}
    raise AssertionError(f"session {sid} could not be read after the failover")
