"""SessionAnalytics.get_session_stats over 10,000 and 100,000 recorded sessions.

    python benchmarks/bench_analytics.py                 # PostgreSQL
    python benchmarks/bench_analytics.py --deployment sqlite
    python benchmarks/bench_analytics.py --quick

Seeds recorded session facts (500 assets, 20 tags, 5 query types, users with ~20 sessions
each, created over 60 days), then times ``get_session_stats`` for everyone, for one user
and for one session type, and ``record_session_metrics`` once per session. The floor,
measured in the same run, is one raw INSERT + commit on the same database. Results
replace this deployment's section of benchmarks/RESULTS.md.

PostgreSQL runs in its own database (``FIML_BENCH_ANALYTICS_URL``, default
``fiml_bench_analytics``), created if absent and emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

from harness import Timing, fresh_postgres, measure, table, write_section
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.core.config import Settings
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.backends.sql import SqlBackend
from fiml.sessions.metrics import SessionFacts, insert_missing_facts
from fiml.sessions.models import SessionType, utcnow
from fiml.sessions.store import SessionStore

PG_URL = os.environ.get(
    "FIML_BENCH_ANALYTICS_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench_analytics"
)
ASSETS = [f"SYM{i:03d}" for i in range(500)]
TAGS = [f"tag{i:02d}" for i in range(20)]
QUERY_TYPES = ["price", "news", "fundamentals", "technicals", "sentiment"]
TYPES = list(SessionType)


def _facts(count: int, rng: random.Random) -> list[SessionFacts]:
    now = utcnow()
    facts = []
    for i in range(count):
        created = now - timedelta(seconds=rng.uniform(60, 60 * 86_400))
        queries = {t: rng.randint(1, 6) for t in rng.sample(QUERY_TYPES, rng.randint(1, 3))}
        total = sum(queries.values())
        facts.append(
            SessionFacts(
                session_id=uuid4(),
                user_id=f"user{i // 20}",
                session_type=TYPES[i % len(TYPES)].value,
                created_at=created,
                ended_at=created + timedelta(seconds=rng.uniform(10, 7200)),
                total_queries=total,
                cache_hits=rng.randint(0, total),
                completed=rng.random() < 0.7,
                assets=tuple(rng.sample(ASSETS, rng.randint(1, 3))),
                tags=tuple(rng.sample(TAGS, rng.randint(0, 2))),
                query_type_counts=queries,
            )
        )
    return facts


async def _settings(deployment: str, directory: Path) -> Settings:
    if deployment == "sqlite":
        return Settings(database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}")
    await fresh_postgres(PG_URL)
    return Settings(database_url=PG_URL)


def _engine(store: SessionStore) -> AsyncEngine:
    """The archive's database, which every deployment keeps in SQL."""
    assert isinstance(store.archive, SqlBackend)
    return store.archive.engine


async def _floor(store: SessionStore, samples: int) -> Timing:
    engine = _engine(store)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_floor (id TEXT, v TEXT)")
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        if engine.dialect.name == "postgresql":

            async def insert(_i: int) -> None:
                await driver.execute("INSERT INTO bench_floor VALUES ($1, $2)", uuid4().hex, "x")

            return await measure("asyncpg INSERT + commit", insert, samples=samples)

        async def insert_sqlite(_i: int) -> None:
            await driver.execute("INSERT INTO bench_floor VALUES (?, ?)", (uuid4().hex, "x"))
            await driver.commit()

        return await measure("aiosqlite INSERT + commit", insert_sqlite, samples=samples)


async def _stats_timings(
    analytics: SessionAnalytics, size: int, samples: int, rng: random.Random
) -> list[Timing]:
    label = f"{size:,} recorded"

    async def everyone(_i: int) -> None:
        await analytics.get_session_stats()

    async def one_user(_i: int) -> None:
        await analytics.get_session_stats(user_id=f"user{rng.randrange(size // 20)}")

    async def one_type(_i: int) -> None:
        await analytics.get_session_stats(session_type="crypto", days=60)

    return [
        await measure(f"get_session_stats, all users, {label}", everyone, samples=samples),
        await measure(f"get_session_stats, one user, {label}", one_user, samples=samples),
        await measure(f"get_session_stats, one type, 60 days, {label}", one_type, samples=samples),
    ]


async def run(deployment: str, quick: bool) -> None:
    sizes = [1_000, 10_000] if quick else [10_000, 100_000]
    samples = 10 if quick else 30
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as directory:
        store = SessionStore(await _settings(deployment, Path(directory)))
        await store.initialize()
        try:
            analytics = SessionAnalytics(store)
            floor = await _floor(store, samples * 5)
            timings: list[Timing] = []
            seeded = 0
            for size in sizes:
                start = time.perf_counter()
                for chunk in range(seeded, size, 5_000):
                    batch = _facts(min(5_000, size - chunk), rng)
                    async with _engine(store).begin() as conn:
                        await conn.run_sync(
                            insert_missing_facts,
                            batch,
                            recorded_at=utcnow(),
                        )
                seed_rate = (size - seeded) / (time.perf_counter() - start) * 60
                seeded = size
                timings += await _stats_timings(analytics, size, samples, rng)
            finished = _facts(1, rng)[0]

            async def record(_i: int) -> None:
                await store.archive.record_metrics([finished], recorded_at=utcnow())

            timings.append(await measure("record one session's facts", record, samples=samples))
        finally:
            await store.shutdown()
    _report(deployment, floor, timings, seed_rate, quick)


def _report(
    deployment: str, floor: Timing, timings: list[Timing], seed_rate: float, quick: bool
) -> None:
    header = ["operation", "p50 ms", "p95 ms", f"x {floor.name}"]
    rows = [
        [t.name, f"{t.p50_ms:.3f}", f"{t.p95_ms:.3f}", f"{t.ratio(floor):.2f}"]
        for t in [floor, *timings]
    ]
    body = table(rows, header)
    body += f"\n\nBulk recording (insert_missing_facts): **{seed_rate:,.0f} sessions/min**.\n"
    if quick:
        body += "\n(quick run: smaller data sets)\n"
    print(body)
    write_section(f"analytics-{deployment}", f"SessionAnalytics on {deployment}", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployment", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller sets")
    args = parser.parse_args()
    asyncio.run(run(args.deployment, args.quick))


if __name__ == "__main__":
    main()
