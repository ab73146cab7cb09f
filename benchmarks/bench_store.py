"""SessionStore latency and cleanup throughput, as ratios to raw driver floors.

    python benchmarks/bench_store.py --deployment sqlite
    python benchmarks/bench_store.py --deployment redis+postgres
    python benchmarks/bench_store.py --deployment postgres --quick

Floors, measured in the same run: one aiosqlite INSERT + commit (SQLite), one asyncpg
INSERT + commit (PostgreSQL), one Redis GET and one Redis SET + GET (Redis).
Results replace this deployment's section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

from harness import Timing, measure, table, write_section

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore, SessionType
from fiml.sessions.db import create_engine
from fiml.sessions.models import Session, utcnow
from fiml.sessions.schema import drop_schema

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_test"
REDIS_URL = "redis://127.0.0.1:6379/12"


def _query(i: int) -> QueryRecord:
    return QueryRecord(
        query_type="price",
        parameters={"symbol": "AAPL", "i": i},
        result_summary="AAPL: $175.43 (+2.30%)",
        execution_time_ms=3.2,
        cache_hit=i % 3 == 0,
    )


async def _reset(deployment: str, directory: Path) -> Settings:
    if deployment == "sqlite":
        return Settings(database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}")
    engine = create_engine(PG_URL)
    await drop_schema(engine)
    await engine.dispose()
    if deployment == "postgres":
        return Settings(database_url=PG_URL)
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    return Settings(database_url=PG_URL, redis_url=REDIS_URL)


async def _floors(deployment: str, directory: Path, samples: int) -> dict[str, Timing]:
    floors: dict[str, Timing] = {}
    if deployment == "sqlite":
        import aiosqlite

        async with aiosqlite.connect(directory / "floor.db") as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v TEXT)")

            async def sqlite_insert(_i: int) -> None:
                await db.execute("INSERT INTO t VALUES (?, ?)", (uuid4().hex, "x" * 64))
                await db.commit()

            floors["sql"] = await measure(
                "aiosqlite INSERT + commit", sqlite_insert, samples=samples
            )
        return floors
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/fiml_test")
    await conn.execute("CREATE TEMP TABLE t (id uuid PRIMARY KEY, v text)")

    async def pg_insert(_i: int) -> None:
        await conn.execute("INSERT INTO t VALUES ($1, $2)", uuid4(), "x" * 64)

    floors["sql"] = await measure("asyncpg INSERT + commit", pg_insert, samples=samples)
    await conn.close()
    if deployment == "redis+postgres":
        import redis.asyncio as redis

        client = redis.Redis.from_url(REDIS_URL)
        await client.set("floor", "x" * 64)

        async def get(_i: int) -> None:
            await client.get("floor")

        async def set_get(_i: int) -> None:
            await client.set("floor", "x" * 64)
            await client.get("floor")

        floors["get"] = await measure("Redis GET", get, samples=samples)
        floors["setget"] = await measure("Redis SET + GET", set_get, samples=samples)
        await client.aclose()
    return floors


async def _seed(store: SessionStore, count: int, *, user_prefix: str, ttl_hours: float) -> None:
    now = utcnow()

    async def one(i: int) -> None:
        session = Session(
            user_id=f"{user_prefix}{i % 1000}",
            type=SessionType.EQUITY,
            assets=["AAPL"],
            created_at=now,
            last_accessed_at=now,
            expires_at=now + timedelta(hours=ttl_hours),
        )
        await store.backend.insert(session)

    for start in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))


async def _history(store: SessionStore, session_id: object, size: int) -> None:
    for start in range(0, size, 500):
        batch = [_query(i) for i in range(start, min(size, start + 500))]
        mine = await store.get_session(session_id, history_limit=0)  # type: ignore[arg-type]
        assert mine is not None
        for q in batch:
            mine.state.history.queries.append(q)
        await store.update_session(mine.id, mine)


async def _latencies(store: SessionStore, samples: int, big_history: int) -> list[Timing]:
    timings: list[Timing] = []
    user = "bench-user"
    created: list[Session] = []

    async def create(_i: int) -> None:
        created.append(await store.create_session(["AAPL", "MSFT"], "comparative", user_id=user))

    timings.append(await measure("create_session", create, samples=samples))
    small = await store.create_session(["AAPL"], "equity", user_id=user, ttl_hours=100)
    large = await store.create_session(["AAPL"], "equity", user_id=user, ttl_hours=100)
    await _history(store, small.id, 10)
    await _history(store, large.id, big_history)

    async def get(_i: int) -> None:
        await store.get_session(large.id)

    timings.append(await measure("get_session (20 recent queries)", get, samples=samples))
    for label, target in (("10", small), (f"{big_history:,}", large)):

        async def track(i: int, sid: object = target.id) -> None:
            await store.append_query(sid, _query(i))  # type: ignore[arg-type]

        timings.append(await measure(f"append_query at history {label}", track, samples=samples))

    async def update(i: int) -> None:
        mine = await store.get_session(small.id, history_limit=0)
        assert mine is not None
        mine.add_query(_query(i))
        mine.state.update_context(f"k{i % 50}", i)
        await store.update_session(mine.id, mine)

    timings.append(await measure("get + update_session", update, samples=samples))
    return timings


async def _scaling(store: SessionStore, samples: int, sizes: list[int]) -> list[Timing]:
    timings: list[Timing] = []
    for _ in range(5):
        await store.create_session(["AAPL"], "equity", user_id="lister")
    seeded = 0
    for size in sizes:
        await _seed(store, size - seeded, user_prefix="other", ttl_hours=100)
        seeded = size

        async def listing(_i: int) -> None:
            await store.list_user_sessions("lister", limit=20)

        async def cleanup(_i: int) -> None:
            await store.cleanup_expired_sessions()

        timings.append(
            await measure(f"list_user_sessions, {size:,} others stored", listing, samples=samples)
        )
        timings.append(
            await measure(f"cleanup, nothing expired, {size:,} stored", cleanup, samples=samples)
        )
    return timings


async def _throughput(store: SessionStore, count: int) -> float:
    await _seed(store, count, user_prefix="expiring", ttl_hours=0.5 / 3600)
    await asyncio.sleep(0.6)
    start = time.perf_counter()
    archived = await store.cleanup_expired_sessions()
    elapsed = time.perf_counter() - start
    if archived != count:
        raise RuntimeError(f"cleanup archived {archived} of {count} sessions")
    return count / elapsed * 60


async def run(deployment: str, quick: bool) -> None:
    samples = 100 if quick else 400
    sizes = [100, 10_000] if quick else [100, 10_000, 100_000]
    big_history = 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        settings = await _reset(deployment, directory)
        settings.session_max_queries_per_session = big_history + 10 * samples
        floors = await _floors(deployment, directory, samples)
        async with SessionStore(settings) as store:
            timings = await _latencies(store, samples, big_history)
            timings += await _scaling(store, max(50, samples // 4), sizes)
        settings = await _reset(deployment, directory)
        async with SessionStore(settings) as store:
            per_minute = await _throughput(store, 5_000 if quick else 20_000)
    _report(deployment, floors, timings, per_minute, quick)


def _report(
    deployment: str,
    floors: dict[str, Timing],
    timings: list[Timing],
    per_minute: float,
    quick: bool,
) -> None:
    floor_names = list(floors)
    header = ["operation", "p50 ms", "p95 ms", *(f"x {floors[f].name}" for f in floor_names)]
    rows = [
        [
            t.name,
            f"{t.p50_ms:.3f}",
            f"{t.p95_ms:.3f}",
            *(f"{t.ratio(floors[f]):.2f}" for f in floor_names),
        ]
        for t in [*floors.values(), *timings]
    ]
    body = table(rows, header)
    body += (
        f"\n\nCleanup throughput (expired sessions archived): **{per_minute:,.0f} sessions/min**."
    )
    if quick:
        body += "\n\n(quick run: smaller histories and stores)"
    write_section(f"store-{deployment}", f"SessionStore on {deployment}", body)
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deployment", choices=["sqlite", "postgres", "redis+postgres"], default="sqlite"
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller stores")
    args = parser.parse_args()
    asyncio.run(run(args.deployment, args.quick))


if __name__ == "__main__":
    main()
