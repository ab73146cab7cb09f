"""What naming the active partition saves an active session's statements, by months kept.

    python benchmarks/bench_partition_pruning.py [--months 3 36]

For each number of monthly partitions, a fresh archive (``fiml_bench``'s database, see
``FIML_BENCH_DATABASE_URL``) gets that many months and one active session of 10 queries;
its row read and its queries read are explained (``EXPLAIN (ANALYZE, BUFFERS)``, the
median of the runs) as PostgreSQL plans them by id alone (before: every partition) and
with ``archive_month = 'infinity'`` (what the backend sends: the active partition only).
Then ``get_session`` through the store, p50. Results replace the ``partition-pruning``
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from harness import fresh_postgres, table, write_section
from sqlalchemy import text

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.backends.sql import SqlBackend

PG_URL = os.environ.get(
    "FIML_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench"
)
RUNS = 30
GETS = 300
_STATEMENTS = {
    "row": "SELECT * FROM sessions WHERE id = :sid",
    "queries": "SELECT * FROM session_queries WHERE session_id = :sid AND seq > 0 AND seq <= 10",
}
_ACTIVE = " AND archive_month = 'infinity'"


def _archive(store: SessionStore) -> SqlBackend:
    archive = store.archive
    assert isinstance(archive, SqlBackend)
    return archive


async def _with_months(months: int) -> tuple[SessionStore, Any]:
    await fresh_postgres(PG_URL)
    store = SessionStore(Settings(database_url=PG_URL, redis_url=None))
    await store.initialize()
    for first in range(0, months, 3):  # each call creates three months
        year, month = divmod(first, 12)
        await _archive(store).ensure_partitions(now=datetime(2030 + year, month + 1, 5, tzinfo=UTC))
    session = await store.create_session(["AAPL"], "equity", user_id="u")
    for _ in range(10):
        await store.append_query(session.id, QueryRecord(query_type="price", parameters={}))
    return store, session.id


async def _explained(store: SessionStore, sql: str, sid: Any) -> tuple[float, float, int]:
    """Median planning and execution ms, and the planner's shared buffers."""
    planning, execution, buffers = [], [], []
    async with _archive(store).engine.connect() as conn:
        for _ in range(RUNS):
            found = await conn.execute(
                text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"), {"sid": sid}
            )
            plan = found.scalar_one()[0]
            planning.append(plan["Planning Time"])
            execution.append(plan["Execution Time"])
            buffers.append(plan.get("Planning", {}).get("Shared Hit Blocks", 0))
    return (
        statistics.median(planning),
        statistics.median(execution),
        int(statistics.median(buffers)),
    )


async def _p50s(store: SessionStore, sid: Any) -> tuple[float, float]:
    """p50 ms of ``get_session`` and of ``append_query``, interleaved."""
    gets, appends = [], []
    for _ in range(GETS):
        start = time.perf_counter()
        await store.get_session(sid)
        middle = time.perf_counter()
        await store.append_query(sid, QueryRecord(query_type="price", parameters={}))
        gets.append((middle - start) * 1000)
        appends.append((time.perf_counter() - middle) * 1000)
    return statistics.median(gets), statistics.median(appends)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--months", type=int, nargs="+", default=[3, 36])
    parser.add_argument("--no-write", action="store_true", help="print only (no RESULTS.md)")
    args = parser.parse_args()
    rows, gets = [], []
    for months in args.months:
        store, sid = await _with_months(months)
        try:
            async with _archive(store).engine.connect() as conn:
                await conn.execute(text("ANALYZE"))
                count = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'sessions'::regclass"
                partitions = (await conn.execute(text(count))).scalar_one()
                await conn.commit()
            for name, sql in _STATEMENTS.items():
                for label, stmt in (
                    ("by id alone", sql),
                    ("active partition named", sql + _ACTIVE),
                ):
                    plan, run, buffers = await _explained(store, stmt, sid)
                    rows.append(
                        [
                            str(partitions),
                            f"{name}, {label}",
                            f"{plan:.3f}",
                            f"{run:.3f}",
                            str(buffers),
                        ]
                    )
            gets.append((partitions, *await _p50s(store, sid)))
        finally:
            await store.shutdown()
    header = ["partitions", "statement", "planning ms", "execution ms", "planner's buffers"]
    body = table(rows, header)
    body += "\n\nThrough the store, on the active session, p50: "
    body += "; ".join(
        f"at {n} partitions `get_session` (20 recent) {get:.3f} ms, `append_query` {add:.3f} ms"
        for n, get, add in gets
    )
    body += "."
    body += f"\n\nEach plan figure the median of {RUNS} `EXPLAIN (ANALYZE, BUFFERS)` runs; "
    body += f"{GETS} gets and appends, interleaved."
    print(body)
    if not args.no_write:
        write_section(
            "partition-pruning", "PostgreSQL: an active session's statements by months kept", body
        )


if __name__ == "__main__":
    asyncio.run(main())
