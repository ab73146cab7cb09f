"""PostgreSQL at scale: the partitioned archive at growing sizes, and migrating an archive into
partitions (issue 18; the Redis half is bench_scale_redis.py).

    python benchmarks/bench_scale_postgres.py --sizes 100000,1000000   # the archive
    python benchmarks/bench_scale_postgres.py --migrate 300000         # migrating 0005 -> 0004

The archive is filled by SQL (``generate_series``, no Python per row) with archived
sessions of ``--queries`` queries each (default 2), archived over the twelve months before
now, 10 per user. At each size the database is grown to it, then the store's
``get_session`` of a random archived session (with its queries) and a page of 20 of a
user's sessions, archived included, are timed, each sample after one sample of a raw
``SELECT 1`` round trip (the floor); "x of first" is the p50 over the smallest size's p50.
Then one retention run (the oldest month dropped whole, the boundary month row by row),
its time and rows deleted. ``--migrate N`` fills a database at revision 0005 (which 0004
follows) with N sessions and their queries and times the upgrade to 0004 (the maintenance
window).

The database is ``FIML_BENCH_SCALE_DATABASE_URL`` (default ``fiml_bench_scale``), created
if absent, its schema dropped and rebuilt. Results replace the ``scale-postgres`` section
of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from harness import fresh_postgres, measure, table, write_section

from fiml.core.config import Settings
from fiml.sessions import SessionStore
from fiml.sessions.backends.sql_partitions import ensure_partitions
from fiml.sessions.db import create_engine
from fiml.sessions.schema import drop_schema, upgrade_schema

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench_scale"
PER_USER = 10
"""Sessions per user: consecutive numbers, so a user keeps them as the archive grows."""
DAYS = 365
RETENTION_DAYS = 330  # the oldest month (or so) past it, the boundary month partly

_SESSIONS = """
INSERT INTO sessions (id, user_id, session_type, assets, tags, created_at, expires_at,
    last_accessed_at, closed_at, archived_at, version, total_queries, cache_hits,
    query_type_counts, first_query_at, last_query_at, context, preferences,
    intermediate_results, metadata{month_column})
SELECT md5(n::text)::uuid, 'u' || (n / {per_user}), 'equity', '["AAPL"]', '[]', t,
    t + interval '1 hour', t, t + interval '30 minutes', t + interval '1 hour', 1, {queries}, 0,
    '{{"price": {queries}}}', t, t, '{{"note": "x"}}', '{{}}', '{{}}', '{{}}'{month_value}
FROM generate_series($1::int, $2::int) AS n,
    LATERAL (SELECT $3::timestamptz - interval '{days} days' * ((n % 100000) / 100000.0) AS t) AS at
"""
_QUERIES = """
INSERT INTO session_queries (session_id, seq, id, timestamp, query_type, parameters,
    result_summary, execution_time_ms, cache_hit{month_column})
SELECT md5(n::text)::uuid, g, md5(n::text || '.' || g)::uuid, t, 'price', '{{"symbol": "AAPL"}}',
    NULL, 1.5, false{month_value}
FROM generate_series($1::int, $2::int) AS n, generate_series(1, {queries}) AS g,
    LATERAL (SELECT $3::timestamptz - interval '{days} days' * ((n % 100000) / 100000.0) AS t) AS at
"""
_MONTH = ", date_trunc('month', (t + interval '1 hour') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def session_id(n: int) -> UUID:
    return UUID(hashlib.md5(str(n).encode()).hexdigest())  # an id, not a secret


def _statements(queries: int, *, partitioned: bool) -> tuple[str, str]:
    month = (
        {"month_column": ", archive_month", "month_value": _MONTH}
        if partitioned
        else {
            "month_column": "",
            "month_value": "",
        }
    )
    shape = {"per_user": PER_USER, "queries": queries, "days": DAYS, **month}
    return _SESSIONS.format(**shape), _QUERIES.format(**shape)


async def fill(
    dsn: str, start: int, end: int, queries: int, now: datetime, *, partitioned: bool
) -> float:
    """Sessions ``start..end`` (and their queries); returns the seconds it took."""
    sessions, query_rows = _statements(queries, partitioned=partitioned)
    began = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        step = 200_000
        for low in range(start, end + 1, step):
            high = min(end, low + step - 1)
            await conn.execute(sessions, low, high, now)
            await conn.execute(query_rows, low, high, now)
        await conn.execute("ANALYZE sessions; ANALYZE session_queries")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def _partitions_for(url: str, now: datetime) -> None:
    engine = create_engine(url)
    months = [now - timedelta(days=d) for d in range(0, DAYS + 31, 15)]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(ensure_partitions, months)
    finally:
        await engine.dispose()


async def archive_at_sizes(url: str, sizes: list[int], queries: int, samples: int) -> str:
    await fresh_postgres(url)
    dsn = url.replace("+asyncpg", "")
    now = datetime.now(UTC)
    await _partitions_for(url, now)
    floor_conn = await asyncpg.connect(dsn)
    rows: list[list[str]] = []
    first: dict[str, float] = {}
    loaded = 0
    try:
        for size in sizes:
            seconds = await fill(dsn, loaded + 1, size, queries, now, partitioned=True)
            print(f"loaded {size:,} sessions: {seconds:.0f} s", flush=True)
            loaded = size
            rng = random.Random(size)
            async with SessionStore(Settings(database_url=url, redis_url=None)) as store:

                async def get(
                    _i: int, store: SessionStore = store, rng: random.Random = rng, size: int = size
                ) -> None:
                    found = await store.get_session(session_id(rng.randint(1, size)))
                    assert found is not None and found.is_archived

                async def page(
                    _i: int, store: SessionStore = store, rng: random.Random = rng, size: int = size
                ) -> None:
                    user = f"u{rng.randint(1, size // PER_USER - 1)}"
                    listed = await store.list_user_sessions(user, include_archived=True, limit=20)
                    assert listed

                async def floor(_i: int) -> None:
                    await floor_conn.fetchval("SELECT 1")

                for name, operation in (("get archived", get), ("list 20, archived", page)):
                    timing = await measure(
                        name, operation, samples=samples, floors={"SELECT 1": floor}
                    )
                    first.setdefault(name, timing.p50_ms)
                    rows.append(
                        [
                            f"{size:,}",
                            f"{seconds:.0f} s",
                            name,
                            f"{timing.p50_ms:.2f}",
                            f"{timing.p95_ms:.2f}",
                            f"{timing.p50_ms / timing.floor_p50_ms['SELECT 1']:.1f}",
                            f"{timing.p50_ms / first[name]:.2f}",
                        ]
                    )
        async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
            began = time.perf_counter()
            deleted = await store.delete_old_archived_sessions(retention_days=RETENTION_DAYS)
            retention = time.perf_counter() - began
    finally:
        await floor_conn.close()
    header = ["archived sessions", "load", "operation", "p50 ms", "p95 ms", "x floor", "x of first"]
    return (
        f"{queries} queries per session, {PER_USER} per user, archived over {DAYS} days in monthly "
        f"partitions; {samples} samples per operation.\n\n"
        + table(rows, header)
        + f"\n\nOne retention run at {loaded:,} sessions ({RETENTION_DAYS} days): "
        f"{deleted:,} sessions deleted in {retention:.2f} s."
    )


async def migration(url: str, sessions: int, queries: int) -> str:
    engine = create_engine(url)
    dsn = url.replace("+asyncpg", "")
    try:
        await fresh_postgres(url)
        await drop_schema(engine)
        await upgrade_schema(engine, "0005")  # 0004 follows 0005
        loaded = await fill(dsn, 1, sessions, queries, datetime.now(UTC), partitioned=False)
        began = time.perf_counter()
        await upgrade_schema(engine, "0004")
        upgraded = time.perf_counter() - began
    finally:
        await engine.dispose()
    rows = sessions * (1 + queries)
    return (
        f"Migration 0005 -> 0004 of {sessions:,} archived sessions with {queries} queries each "
        f"({rows:,} rows, loaded in {loaded:.0f} s): {upgraded:.1f} s, "
        f"{rows / upgraded:,.0f} rows/s, the tables locked throughout."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--migrate", type=int, default=0, help="sessions to migrate (0: skip)")
    args = parser.parse_args()
    url = os.environ.get("FIML_BENCH_SCALE_DATABASE_URL", DEFAULT_URL)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    parts = []
    if sizes:
        parts.append(asyncio.run(archive_at_sizes(url, sizes, args.queries, args.samples)))
    if args.migrate:
        parts.append(asyncio.run(migration(url, args.migrate, args.queries)))
    body = "\n\n".join(parts)
    print(body)
    write_section("scale-postgres", "Scale: the partitioned PostgreSQL archive", body)


if __name__ == "__main__":
    main()
