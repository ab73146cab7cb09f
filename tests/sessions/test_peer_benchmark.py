"""The smallest run of ``benchmarks/bench_peers.py``, without the peers: it keeps running.

The peers (OpenAI Agents' sessions, LangGraph's savers) are not FIML dependencies, so this
run has FIML and the raw driver floors only, on the test PostgreSQL and Redis and a temporary
SQLite file, and leaves benchmarks/RESULTS.md alone. The figures belong to the benchmark; this
checks that every operation ran on both tiers and that the verdicts name the targets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fiml
from tests.conftest import require_postgres, require_redis

SOURCE = Path(fiml.__file__).resolve().parent.parent
SCRIPT = SOURCE / "benchmarks" / "bench_peers.py"


@pytest.mark.timeout(180)
async def test_the_smallest_run_reports_every_operation_on_both_tiers() -> None:
    # A database of its own: the benchmark drops and creates tables, which must not reach the
    # database the other tests share (the schema test compares it with the models).
    database_url = await require_postgres() + "_bench"
    redis_url = require_redis()
    env = {
        **os.environ,
        "PYTHONPATH": str(SOURCE),
        "FIML_BENCH_PEERS_DATABASE_URL": database_url,
        "FIML_BENCH_REDIS_URL": redis_url,
    }
    results = (SOURCE / "benchmarks" / "RESULTS.md").read_text()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--without-peers", "--no-write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    for tier, floor in (("SQLite", "aiosqlite INSERT + commit"), ("PostgreSQL", "asyncpg")):
        assert f"### {tier}" in out
        assert floor in out
    for operation in (
        "append 1 item, 0 there",
        "append 1 item, 20 there",
        "read latest 20",
        "5 concurrent appends",
        "5-query workflow",
    ):
        assert out.count(f"| {operation} | FIML |") == 2, operation
    assert "| 5-query workflow | FIML on Redis + PostgreSQL |" in out
    assert "FIML <= 2x asyncpg floor" in out
    assert "FIML <= 3x FIML on Redis + PostgreSQL" in out
    assert "OpenAI" not in out and "LangGraph" not in out
    assert (SOURCE / "benchmarks" / "RESULTS.md").read_text() == results
