"""A master killed under load on a Redis Cluster of its own (ports from
``FIML_TEST_REDIS_FAILOVER_PORT``, 7110 by default): with ``FIML_REDIS_WAIT_REPLICAS=1``
no acknowledged write is lost, even when the replica had stopped taking the master's
stream before the kill. (Without WAIT, what is lost is measured in
benchmarks/bench_cluster.py, not asserted: it depends on timing.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fiml.core.config import Settings
from tests.conftest import IN_CI, require_postgres, reset_postgres
from tests.redis_cluster import LocalCluster, cluster_tools_missing
from tests.reliability.cluster_failover import failover_under_load


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    missing = cluster_tools_missing()
    if missing is not None:
        if IN_CI:
            pytest.fail(f"no Redis Cluster can be started: {missing}")
        pytest.skip(f"no Redis Cluster can be started: {missing}")
    cluster = LocalCluster(int(os.environ.get("FIML_TEST_REDIS_FAILOVER_PORT", "7110")))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.mark.timeout(120)
async def test_waiting_for_a_replica_loses_no_acknowledged_write_at_failover(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    pg = await require_postgres()
    await reset_postgres(pg)
    settings = Settings(
        database_url=pg,
        redis_url=own_cluster.url,
        redis_cluster=True,
        redis_wait_replicas=1,
        redis_timeout_seconds=2,
        session_max_queries_per_session=1_000_000,
    )
    result = await failover_under_load(own_cluster, settings, cut_replication=True)
    assert result.acknowledged > 100  # the writers did write, before and after
    assert result.lost == 0, result
    assert sum(result.failed.values()) > 0  # the writes no replica took were refused
