"""Redis Cluster: the cost of waiting for a replica (WAIT), and what a failover loses.

Starts a 3-master, 3-replica cluster of its own (tests/redis_cluster.py, ports from
``FIML_BENCH_CLUSTER_PORT``, 7110 by default; run from the repository root with
``PYTHONPATH=.``) and PostgreSQL in ``FIML_BENCH_CLUSTER_DATABASE_URL``. Three parts:

1. ``append_query`` with ``FIML_REDIS_WAIT_REPLICAS=1`` against the same write without
   WAIT, samples interleaved (the floor: the write without WAIT, same run, same cluster);
   ``create_session`` likewise.
2. Failover under load: writers append nonstop, the master of one session is SIGKILLed,
   its replica promoted; every acknowledged query is looked for afterwards. Without WAIT
   with the replication link up, without WAIT with it cut (the replica paused 2 s before
   the kill), and with WAIT and the link cut.

Results replace the ``redis-cluster`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from harness import Operation, fresh_postgres, machine, measure, table, write_section

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore
from tests.redis_cluster import LocalCluster
from tests.reliability.cluster_failover import failover_under_load

PG_URL = os.environ.get(
    "FIML_BENCH_CLUSTER_DATABASE_URL",
    "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench_cluster",
)
PORT = int(os.environ.get("FIML_BENCH_CLUSTER_PORT", "7110"))


def _settings(cluster: LocalCluster, **overrides: object) -> Settings:
    return Settings(
        database_url=PG_URL,
        redis_url=cluster.url,
        redis_cluster=True,
        redis_timeout_seconds=2,
        session_max_queries_per_session=1_000_000,
        **overrides,  # type: ignore[arg-type]
    )


async def _wait_cost(cluster: LocalCluster, samples: int) -> list[list[str]]:
    async with (
        SessionStore(_settings(cluster)) as plain,
        SessionStore(_settings(cluster, redis_wait_replicas=1)) as waiting,
    ):
        session = await plain.create_session(["AAPL"], "equity", user_id="bench")

        def append(store: SessionStore) -> Operation:
            async def call(_i: int) -> None:
                await store.append_query(session.id, QueryRecord(query_type="p", cache_hit=False))

            return call

        def create(store: SessionStore) -> Operation:
            async def call(_i: int) -> None:
                await store.create_session(["AAPL"], "equity", user_id="bench")

            return call

        rows = []
        for name, make in (("append_query", append), ("create_session", create)):
            timing = await measure(
                f"{name}, WAIT 1 replica",
                make(waiting),
                samples=samples,
                floors={"no WAIT": make(plain)},
            )
            floor = timing.floor_p50_ms["no WAIT"]
            rows.append(
                [
                    name,
                    f"{floor:.3f}",
                    f"{timing.p50_ms:.3f}",
                    f"{timing.p95_ms:.3f}",
                    f"{timing.p50_ms / floor:.2f}",
                ]
            )
    return rows


async def _failovers() -> list[list[str]]:
    rows = []
    cases: tuple[tuple[str, dict[str, int], bool], ...] = (
        ("no WAIT, replication link up", {}, False),
        ("no WAIT, replication link cut 2 s before the kill", {}, True),
        ("WAIT 1 replica, link cut 2 s before the kill", {"redis_wait_replicas": 1}, True),
    )
    for label, overrides, cut in cases:
        cluster = LocalCluster(PORT).start()
        try:
            result = await failover_under_load(
                cluster, _settings(cluster, **overrides), cut_replication=cut
            )
        finally:
            cluster.stop()
        refused = sum(result.failed.values())
        rows.append([label, str(result.acknowledged), str(result.lost), str(refused)])
        print(label, result)
    return rows


async def run(quick: bool) -> None:
    samples = 200 if quick else 1000
    await fresh_postgres(PG_URL)
    cluster = LocalCluster(PORT).start()
    try:
        cost = await _wait_cost(cluster, samples)
    finally:
        cluster.stop()
    failover = await _failovers()
    body = (
        f"_{machine()}_ {samples} interleaved samples per row on a local 3-master, "
        "3-replica cluster (loopback, no persistence). The floor is the same write without "
        "WAIT, timed between the samples of the write with it.\n\n"
        + table(
            cost,
            ["write", "no WAIT p50 ms", "WAIT p50 ms", "WAIT p95 ms", "x write without WAIT"],
        )
        + "\n\nFailover under load (30 sessions, one writer each, nonstop; the master of "
        "one session SIGKILLed after 1 s; 1.5 s more writing after its replica is "
        "promoted). Acknowledged: writes that returned; lost: acknowledged queries "
        "missing when every session is read back afterwards; refused: writes that failed "
        "(not acknowledged: the caller knows to retry).\n\n"
        + table(failover, ["case", "acknowledged", "lost", "refused"])
        + "\n\n"
        + NOTES
    )
    write_section("redis-cluster", "Redis Cluster: WAIT cost and failover loss", body)
    print(table(cost, ["write", "no WAIT", "WAIT", "p95", "ratio"]))
    print(table(failover, ["case", "acknowledged", "lost", "refused"]))


NOTES = """\
Redis replicates asynchronously: a master acknowledges a write before any replica has it.
With the replication link up, the replica is normally a few milliseconds behind, so a
SIGKILL loses at most the writes of those milliseconds (often none). With the link cut
(a slow or partitioned replica), everything the master acknowledged since is lost when the
replica is promoted. `FIML_REDIS_WAIT_REPLICAS=1` sends WAIT after each session write, on
the connection that carried it: a write is acknowledged only once a replica holds it, and
one that no replica takes in `FIML_REDIS_WAIT_TIMEOUT_SECONDS` fails with a storage error
(it may still be applied; a retried `track_query` is a no-op by query id). WAIT does not
make Redis strongly consistent (a replica that acknowledged may itself fail), but a single
master failure then loses no acknowledged write."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    asyncio.run(run(args.quick))


if __name__ == "__main__":
    main()
