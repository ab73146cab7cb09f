"""Not-found parity: another user's session id costs what an unknown id costs.

    python benchmarks/bench_not_found.py             # every deployment
    python benchmarks/bench_not_found.py --quick     # fewer samples

For each deployment (SQLite, PostgreSQL, Redis+PostgreSQL) alice asks for a session id
that is unknown, one that is bob's and running, and one that is bob's and archived, two
ways: through ``owned_session`` (what every tool does first) and as ``get-session-info``
over the MCP SDK's in-memory client. Every reply is the same SessionNotFoundError. The
floor is the unknown id's own call, timed interleaved with the others (one floor sample
before each sample), so each figure is foreign / unknown p50: 1.00 is parity. The row
"before" times the read the code made before this benchmark's change (``get_session`` and
an owner check) on the running foreign session, to show the gap it closed.

PostgreSQL runs in a database of its own (``FIML_BENCH_NOT_FOUND_DATABASE_URL``, default
``fiml_bench_not_found``), created if absent, its schema dropped and rebuilt; Redis keys go
under a prefix of their own in ``FIML_BENCH_REDIS_URL`` (default database 12), removed at
the end. Results replace the ``not-found-parity`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID

from harness import Operation, Timing, fresh_postgres, measure, table, write_section
from mcp import Client

from fiml.core.config import Settings
from fiml.core.errors import SessionNotFoundError
from fiml.market.service import MarketData
from fiml.mcp.auth import Identity, StaticIdentity
from fiml.mcp.ownership import owned_session
from fiml.mcp.server import build_server
from fiml.sessions import SessionStore

PG_URL = os.environ.get(
    "FIML_BENCH_NOT_FOUND_DATABASE_URL",
    "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench_not_found",
)
REDIS_URL = os.environ.get("FIML_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PREFIX = "fiml-bench-not-found"
DEPLOYMENTS = ("sqlite", "postgres", "redis+postgres")
UNKNOWN = UUID("00000000-0000-4000-8000-000000000000")
ALICE = Identity("alice", "user")
SEEDED_QUERIES = 20
"""Queries in bob's sessions, so that a foreign session that is read costs its history."""


async def _settings(deployment: str, directory: Path) -> Settings:
    if deployment == "sqlite":
        return Settings(database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}")
    await fresh_postgres(PG_URL)
    if deployment == "postgres":
        return Settings(database_url=PG_URL)
    return Settings(database_url=PG_URL, redis_url=REDIS_URL, redis_key_prefix=PREFIX)


async def _drop_redis_keys() -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{PREFIX}:*"):
            await client.delete(key)
    finally:
        await client.aclose()


@asynccontextmanager
async def _store(deployment: str, directory: Path) -> AsyncIterator[SessionStore]:
    try:
        async with SessionStore(await _settings(deployment, directory)) as store:
            yield store
    finally:
        if deployment == "redis+postgres":
            await _drop_redis_keys()


async def _bobs_session(store: SessionStore, *, archived: bool) -> UUID:
    from fiml.sessions import QueryRecord

    session = await store.create_session(["AAPL", "MSFT"], "equity", user_id="bob")
    for i in range(SEEDED_QUERIES):
        record = QueryRecord(query_type="price", parameters={"symbol": f"S{i}"})
        await store.append_query(session.id, record)
    if archived:
        await store.archive_session(session.id)
    return session.id


def _owned(store: SessionStore, sid: UUID) -> Operation:
    async def call(_i: int) -> None:
        try:
            await owned_session(store, ALICE, sid)
        except SessionNotFoundError:
            return
        raise RuntimeError(f"alice read session {sid}")

    return call


def _before(store: SessionStore, sid: UUID) -> Operation:
    async def call(_i: int) -> None:
        session = await store.get_session(sid)
        if session is not None and session.user_id == ALICE.user_id:
            raise RuntimeError(f"alice read session {sid}")

    return call


def _info(client: Client, sid: UUID) -> Operation:
    async def call(_i: int) -> None:
        result = await client.call_tool("get-session-info", {"session_id": str(sid)})
        if not result.is_error:
            raise RuntimeError(f"alice read session {sid}")

    return call


async def _deployment(deployment: str, samples: int, directory: Path) -> list[list[str]]:
    rows = []
    async with _store(deployment, directory) as store, MarketData.offline() as market:
        running = await _bobs_session(store, archived=False)
        archived = await _bobs_session(store, archived=True)
        server = build_server(store=store, market=market, identity=StaticIdentity(ALICE))
        async with Client(server) as client:
            for way, make in (("owned_session", _owned), ("get-session-info", _info)):
                target = store if make is _owned else client
                unknown = make(target, UNKNOWN)  # type: ignore[arg-type]
                cases = [("bob's, running", running), ("bob's, archived", archived)]
                for label, sid in cases:
                    timing = await measure(
                        label,
                        make(target, sid),  # type: ignore[arg-type]
                        samples=samples,
                        floors={"unknown": unknown},
                    )
                    rows.append(_row(deployment, way, timing))
            before = await measure(
                "bob's, running (before)",
                _before(store, running),
                samples=samples,
                floors={"unknown": _before(store, UNKNOWN)},
            )
            rows.append(_row(deployment, "get_session + owner check", before))
    return rows


def _row(deployment: str, way: str, timing: Timing) -> list[str]:
    floor = timing.floor_p50_ms["unknown"]
    return [
        deployment,
        way,
        timing.name,
        f"{floor:.3f}",
        f"{timing.p50_ms:.3f}",
        f"{timing.p50_ms / floor:.2f}",
    ]


async def run(deployments: list[str], quick: bool) -> None:
    samples = 100 if quick else 400
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for deployment in deployments:
            rows += await _deployment(deployment, samples, Path(tmp))
            print(f"{deployment}: done")
    header = ["deployment", "path", "foreign id", "unknown p50 ms", "foreign p50 ms", "ratio"]
    body = (
        f"{samples} interleaved samples per row; the floor is the unknown id's call (same "
        "path, same deployment), each figure foreign / unknown p50 (1.00 is parity).\n\n"
        + table(rows, header)
        + "\n\n"
        + NOTES
    )
    write_section("not-found-parity", "Not-found parity (foreign vs unknown session id)", body)
    print(table(rows, header))


NOTES = """\
**What is the same.** Every tool reads a session for its caller only
(`SessionStore.get_user_session`): each tier's `load(owner=...)` misses another user's
session by the very read that finds nothing at an unknown id (one indexed SELECT with the
owner in its WHERE clause on SQL, one HGET of the owner field in Redis's READ script, before
anything of the session is fetched or decoded), and on Redis+PostgreSQL both then get the
same archive probe. So the rows differ only by noise; the floor is the unknown id's call on
the same path, so a ratio of 1.00 is parity. The "before" rows time the read the tools made
before (`get_session`, then an owner check): on SQL a foreign session was read and decoded
with its recent queries (slower than an unknown id), on Redis+PostgreSQL a foreign running
session answered from Redis while an unknown id also probed the archive (faster)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployment", choices=DEPLOYMENTS, action="append")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    asyncio.run(run(args.deployment or list(DEPLOYMENTS), args.quick))


if __name__ == "__main__":
    main()
