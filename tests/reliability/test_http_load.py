"""A small run of ``benchmarks/load_http.py``: real stateless servers, concurrent agents.

Two ``python -m fiml.mcp --http --stateless`` processes on the test Redis and PostgreSQL,
twenty agents tracking searches through both for a few seconds; afterwards every
acknowledged query must be in its session with exact counters, and no call may have
failed. The figures (throughput, latency) belong to the benchmark, not to this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load_http import run_load
from tests.conftest import require_postgres, require_redis, reset_postgres, reset_redis


@pytest.mark.timeout(240)
async def test_two_servers_and_twenty_agents_lose_nothing(tmp_path: Path) -> None:
    database_url = await require_postgres()
    redis_url = require_redis()
    await reset_postgres(database_url)
    await reset_redis(redis_url)

    report = await run_load(
        database_url=database_url,
        redis_url=redis_url,
        servers=2,
        clients=20,
        duration=4,
        users=3,
        workdir=tmp_path,
    )

    assert report.error_samples == []
    assert (report.errors, report.lost, report.mismatched_sessions) == (0, 0, 0)
    assert report.sessions == 20
    assert report.tracked > 0
