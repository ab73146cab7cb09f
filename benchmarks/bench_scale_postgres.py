"""PostgreSQL at scale: the partitioned archive at growing sizes, and migrating an archive into
partitions (issue 18; the Redis half is bench_scale_redis.py).

    python benchmarks/bench_scale_postgres.py --sizes 100000,1000000   # the archive
    python benchmarks/bench_scale_postgres.py --migrate 300000         # migrating 0005 -> 0004

The archive is filled by SQL (``generate_series``, no Python per row) with archived
sessions of ``--queries`` queries each (default 2), archived over the twelve months before
now, 10 per user. At each size the database is grown to it (a bulk load: keys and indexes
dropped, rows inserted, keys and indexes built again and checked against the migrated
catalog, see :func:`bulk_fill`), then the store's ``get_session`` of a random archived
session (with its queries) and a page of 20 of a user's sessions, archived included, are
timed, each sample after one sample of a raw ``SELECT 1`` round trip (the floor); "x of
first" is the p50 over the smallest size's p50. At the largest size both reads are timed
again interleaved, sample for sample, with the same reads on a second archive of the
smallest size (``<database>_first``), so the two sizes meet the same machine load. Then
one retention run (the oldest month dropped whole, the boundary month row by row), its
time and rows deleted. ``--migrate N`` fills a database at revision 0005 (which 0004
follows) with N sessions and their queries and times the upgrade to 0004 (the maintenance
window).

The database is ``FIML_BENCH_SCALE_DATABASE_URL`` (default ``fiml_bench_scale``), created
if absent, its schema dropped and rebuilt (``<database>_first`` likewise); drop both after
a run to free the disk (some 8 GB at 10,000,000). Results replace the ``scale-postgres`` section
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
from harness import Operation, fresh_postgres, measure, table, write_section

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
_STEP = 200_000  # sessions per INSERT

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
        for low in range(start, end + 1, _STEP):
            high = min(end, low + _STEP - 1)
            await conn.execute(sessions, low, high, now)
            await conn.execute(query_rows, low, high, now)
        await conn.execute("ANALYZE sessions; ANALYZE session_queries")
    finally:
        await conn.close()
    return time.perf_counter() - began


_PARENTS = ["sessions", "session_queries"]
_KEYS = """
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = ANY($1::regclass[]) AND contype IN ('p', 'u') ORDER BY conname
"""
_INDEXES = """
SELECT indrelid::regclass::text, indexrelid::regclass::text, pg_get_indexdef(indexrelid)
FROM pg_index WHERE indrelid = ANY($1::regclass[])
    AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE contype IN ('p', 'u'))
ORDER BY 2
"""
_CATALOG = """
SELECT 'index', t.relname, i.relname, pg_get_indexdef(x.indexrelid) || ' valid=' || x.indisvalid
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = current_schema()
UNION ALL
SELECT 'constraint', c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname = current_schema()
UNION ALL
SELECT 'column', a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod)
    || ' not null=' || a.attnotnull
FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND t.relkind IN ('r', 'p') AND a.attnum > 0
    AND NOT a.attisdropped
ORDER BY 1, 2, 3
"""


async def bulk_fill(dsn: str, start: int, end: int, queries: int, now: datetime) -> float:
    """As :func:`fill` for the partitioned archive, loaded as a bulk load is: the two tables'
    keys and indexes dropped, the rows inserted by two connections at once (one per table,
    ``synchronous_commit`` off), the heap vacuumed, then every key and index built again from
    its own definition and the tables analyzed. Inserting random UUIDs into live indexes
    slowed as they outgrew the server's buffers (5.4M sessions in 14.5 min); building them
    after the load sorts once. The catalog (every index, constraint and column of the schema)
    is compared before and after: the archive measured is the schema the migrations create."""
    sessions, query_rows = _statements(queries, partitioned=True)
    began = time.perf_counter()
    conns = [await asyncpg.connect(dsn) for _ in _PARENTS]
    admin = conns[0]
    try:
        before = await admin.fetch(_CATALOG)
        keys = await admin.fetch(_KEYS, _PARENTS)
        indexes = await admin.fetch(_INDEXES, _PARENTS)
        for table_name, name, _definition in keys:
            await admin.execute(f"ALTER TABLE {table_name} DROP CONSTRAINT {name}")
        for _table_name, name, _definition in indexes:
            await admin.execute(f"DROP INDEX {name}")
        for conn in conns:
            await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'")

        async def load(conn: asyncpg.Connection, statement: str) -> None:
            for low in range(start, end + 1, _STEP):
                await conn.execute(statement, low, min(end, low + _STEP - 1), now)

        await asyncio.gather(load(conns[0], sessions), load(conns[1], query_rows))
        await admin.execute("VACUUM sessions, session_queries")

        async def build(conn: asyncpg.Connection, table_name: str) -> None:
            for owner, name, definition in keys:
                if owner == table_name:
                    await conn.execute(f"ALTER TABLE {owner} ADD CONSTRAINT {name} {definition}")
            for owner, _name, definition in indexes:
                if owner == table_name:  # ON ONLY would build the parent's index alone
                    await conn.execute(definition.replace(" ON ONLY ", " ON ", 1))

        await asyncio.gather(
            *(build(conn, name) for conn, name in zip(conns, _PARENTS, strict=True))
        )
        await admin.execute("ANALYZE sessions; ANALYZE session_queries")
        if await admin.fetch(_CATALOG) != before:
            raise RuntimeError("the archive's keys and indexes were not rebuilt as migrated")
    finally:
        for conn in conns:
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


def _operations(store: SessionStore, size: int) -> dict[str, Operation]:
    """The two reads timed at ``size`` archived sessions, by name."""
    rng = random.Random(size)

    async def get(_i: int) -> None:
        found = await store.get_session(session_id(rng.randint(1, size)))
        assert found is not None and found.is_archived

    async def page(_i: int) -> None:
        user = f"u{rng.randint(1, size // PER_USER - 1)}"
        listed = await store.list_user_sessions(user, include_archived=True, limit=20)
        assert listed

    return {"get archived": get, "list 20, archived": page}


async def _archive(url: str, now: datetime) -> None:
    await fresh_postgres(url)
    await _partitions_for(url, now)


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


async def archive_at_sizes(url: str, sizes: list[int], queries: int, samples: int) -> str:
    dsn = url.replace("+asyncpg", "")
    now = datetime.now(UTC)
    await _archive(url, now)
    floor_conn = await asyncpg.connect(dsn)

    async def floor(_i: int) -> None:
        await floor_conn.fetchval("SELECT 1")

    rows: list[list[str]] = []
    first: dict[str, float] = {}
    loaded = 0
    side_by_side = ""
    try:
        for size in sizes:
            seconds = await bulk_fill(dsn, loaded + 1, size, queries, now)
            disk = await floor_conn.fetchval("SELECT pg_database_size(current_database())")
            print(f"loaded {size:,} sessions: {seconds:.0f} s, load {_load()}", flush=True)
            loaded = size
            async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
                for name, operation in _operations(store, size).items():
                    timing = await measure(
                        name, operation, samples=samples, floors={"SELECT 1": floor}
                    )
                    first.setdefault(name, timing.p50_ms)
                    rows.append(
                        [
                            f"{size:,}",
                            f"{seconds:.0f} s",
                            f"{disk / size:,.0f} B",
                            name,
                            f"{timing.p50_ms:.2f}",
                            f"{timing.p95_ms:.2f}",
                            f"{timing.floor_p50_ms['SELECT 1']:.2f}",
                            f"{timing.p50_ms / timing.floor_p50_ms['SELECT 1']:.1f}",
                            f"{timing.p50_ms / first[name]:.2f}",
                            _load(),
                        ]
                    )
                    print(" | ".join(rows[-1]), flush=True)
        if len(sizes) > 1:
            side_by_side = await _interleaved(url, sizes[0], loaded, queries, samples, now, floor)
        async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
            load_before = _load()
            began = time.perf_counter()
            deleted = await store.delete_old_archived_sessions(retention_days=RETENTION_DAYS)
            retention = time.perf_counter() - began
    finally:
        await floor_conn.close()
    header = [
        "archived sessions",
        "load",
        "disk per session",
        "operation",
        "p50 ms",
        "p95 ms",
        "SELECT 1 p50 ms",
        "x floor",
        "x of first",
        "load avg",
    ]
    return (
        f"{queries} queries per session, {PER_USER} per user, archived over {DAYS} days in monthly "
        f"partitions; {samples} samples per operation. Load: the seconds to grow the archive "
        "to the size (keys and indexes built after the rows, see `bulk_fill`); disk: the "
        "database's size over its sessions; load avg: the 1-minute load average after the "
        "operation's samples.\n\n"
        + table(rows, header)
        + side_by_side
        + f"\n\nOne retention run at {loaded:,} sessions ({RETENTION_DAYS} days, load average "
        f"{load_before}): {deleted:,} sessions deleted in {retention:.2f} s."
    )


async def _interleaved(
    url: str,
    small: int,
    large: int,
    queries: int,
    samples: int,
    now: datetime,
    floor: Operation,
) -> str:
    """The reads at ``large`` (the archive of ``url``) and at ``small`` (a second database,
    ``<name>_first``, filled alike), sample for sample: the same moment's machine load for
    both, so their absolute p50s compare as well as their ratios to the floor."""
    small_url = f"{url}_first"
    await _archive(small_url, now)
    await bulk_fill(small_url.replace("+asyncpg", ""), 1, small, queries, now)
    rows: list[list[str]] = []
    async with (
        SessionStore(Settings(database_url=url, redis_url=None)) as large_store,
        SessionStore(Settings(database_url=small_url, redis_url=None)) as small_store,
    ):
        small_ops = _operations(small_store, small)
        for name, operation in _operations(large_store, large).items():
            at_small = f"{name} at {small:,}"
            timing = await measure(
                name,
                operation,
                samples=samples,
                floors={"SELECT 1": floor, at_small: small_ops[name]},
            )
            small_p50 = timing.floor_p50_ms[at_small]
            floor_p50 = timing.floor_p50_ms["SELECT 1"]
            rows.append(
                [
                    name,
                    f"{floor_p50:.2f}",
                    f"{small_p50:.2f}",
                    f"{timing.p50_ms:.2f}",
                    f"{timing.p50_ms / small_p50:.2f}",
                    _load(),
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    header = [
        "operation",
        "SELECT 1 p50 ms",
        f"p50 ms at {small:,}",
        f"p50 ms at {large:,}",
        "ratio",
        "load avg",
    ]
    return (
        f"\n\nInterleaved, sample for sample ({samples} each): the same reads on a second "
        f"archive of {small:,} sessions and on this one of {large:,}.\n\n" + table(rows, header)
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
