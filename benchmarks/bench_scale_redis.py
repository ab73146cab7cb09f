"""Redis at scale: bytes per active session, and list / cleanup / get as the store grows.

Issue 18, item 5 (the Redis half; the PostgreSQL half is ``bench_scale.py``): up to
1,000,000 active sessions of 20 tracked queries each, on a private ``redis-server`` of the
benchmark's own (no persistence, no memory limit), the archive on PostgreSQL.

How the store is filled. Writing a million sessions of 20 queries through the store is 21
million script runs, hours on this machine; the figures asked for do not depend on how
the keys got there. So a few *template* sessions are written through the store, as an
agent writes them (4 assets, 20 tracked queries, a context), and the rest are copies:
each of a template's keys DUMPed once and RESTOREd under a new session id, then the
copy's owner and times set in its meta hash and its entries added to the user and expiry
indexes, exactly as ``RedisBackend.insert`` adds them. RESTORE keeps Redis's own
encoding of each key, so the bytes per session are those of a session written by the
store. The sessions are spread over ``USERS`` owners; the probe user, whose listing is
timed, has ``PROBE_SESSIONS`` sessions at every size, written through the store.

Timed at each size, interleaved with a floor (one PING on the store's own client):
``list_user_sessions`` of the probe user (a page of 20), ``cleanup_expired_sessions``
with nothing due, and ``get_session`` of a copied session. Each p50 is reported as a
ratio to the floor and to its own p50 at the smallest size (target: within 20%).

    python benchmarks/bench_scale_redis.py                 # 1k, 10k, 100k, 1M
    python benchmarks/bench_scale_redis.py --sizes 1000 20000 --samples 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import redis.asyncio as redis
from harness import Operation, Timing, fresh_postgres, measure, table, write_section

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore, SessionType
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.models import utcnow

PG_URL = os.environ.get(
    "FIML_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench_scale"
)
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUERIES = 20
TEMPLATES = 8
USERS = 10_000
PROBE_USER = "probe"
PROBE_SESSIONS = 100
BATCH = 500
"""Copies sent in one pipeline."""
SYMBOLS = ("AAPL", "GOOGL", "MSFT", "NVDA", "AMZN", "META", "TSLA", "BTC-USD")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BenchRedis:
    """A private redis-server, killed at the end."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fiml-scale-"))
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.dir), "--logfile", "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def wait(self) -> None:
        client = redis.Redis(port=self.port)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except redis.ConnectionError:
                    await asyncio.sleep(0.05)
            raise SystemExit("the private redis-server did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def write_session(store: SessionStore, user: str, n: int) -> uuid.UUID:
    """One session as an agent writes it: four assets, ``QUERIES`` tracked queries."""
    assets = [SYMBOLS[(n + i) % len(SYMBOLS)] for i in range(4)]
    session = await store.create_session(assets, SessionType.EQUITY, user_id=user, tags=["scale"])
    for q in range(QUERIES):
        symbol = assets[q % 4]
        record = QueryRecord(
            query_type="price",
            parameters={"symbol": symbol},
            result_summary=f"{symbol} 123.45 +0.67% vol 12.3M",
            execution_time_ms=12.5,
            cache_hit=q % 3 == 0,
        )
        await store.append_query(session.id, record, context={"last_symbol": symbol, "step": q})
    return session.id


class Copier:
    """Copies of template sessions, restored key by key under new ids."""

    def __init__(self, raw: redis.Redis, keys: rk.RedisKeyspace) -> None:
        self.raw = raw
        self.keys = keys
        self.templates: list[list[tuple[int, bytes]]] = []
        self.made = 0

    async def add_template(self, session_id: uuid.UUID) -> None:
        dumps = []
        for i, key in enumerate(self.keys.session_keys(session_id)):
            payload = await self.raw.dump(key)
            if payload is not None:
                dumps.append((i, payload))
        self.templates.append(dumps)

    async def copy(self, count: int) -> None:
        """``count`` more copies, spread over ``USERS`` owners, each created a microsecond
        after the previous one (distinct index scores, as real sessions have)."""
        now = utcnow()
        created0 = int(now.timestamp() * 1_000_000)
        expires = int((now + timedelta(days=2)).timestamp() * 1_000_000)
        done = 0
        while done < count:
            pipe = self.raw.pipeline(transaction=False)
            for _ in range(min(BATCH, count - done)):
                n = self.made
                sid = str(uuid.uuid4())
                owner = f"user-{n % USERS}"
                created = created0 - n
                keys = self.keys.session_keys(sid)
                for index, payload in self.templates[n % len(self.templates)]:
                    pipe.restore(keys[index], 0, payload)
                pipe.hset(
                    keys.meta,
                    mapping={
                        "user_id": owner,
                        "created_at": created,
                        "last_accessed_at": created,
                        "expires_at": expires,
                    },
                )
                pipe.zadd(self.keys.expiry_index(sid), {sid: expires})
                pipe.zadd(self.keys.user_index(owner, sid), {sid: created})
                self.made += 1
                done += 1
            await pipe.execute()


async def used_memory(raw: redis.Redis) -> int:
    info = await raw.info("memory")
    return int(info["used_memory"])


async def run(sizes: Sequence[int], samples: int) -> None:
    server = BenchRedis()
    try:
        await server.wait()
        await fresh_postgres(PG_URL)
        settings = Settings(database_url=PG_URL, redis_url=server.url)
        raw = redis.Redis.from_url(server.url)
        keys = rk.RedisKeyspace(settings.redis_key_prefix)
        rows: list[list[str]] = []
        base: dict[str, Timing] = {}
        async with SessionStore(settings) as store:
            probe = [await write_session(store, PROBE_USER, n) for n in range(PROBE_SESSIONS)]
            copier = Copier(raw, keys)
            empty = await used_memory(raw)
            templates = [await write_session(store, "template", n) for n in range(TEMPLATES)]
            per_written = (await used_memory(raw) - empty) / TEMPLATES
            for sid in templates:
                await copier.add_template(sid)
            some_copy: uuid.UUID | None = None
            stored = PROBE_SESSIONS + TEMPLATES
            for size in sizes:
                before, started = await used_memory(raw), time.perf_counter()
                await copier.copy(size - stored)
                load_s = time.perf_counter() - started
                added = size - stored
                per_copy = (await used_memory(raw) - before) / added if added else 0.0
                stored = size
                if some_copy is None:
                    member: list[object] = []
                    for shard in keys.user_shards("user-0"):
                        member = member or list(await raw.zrange(shard, 0, 0))
                    first = member[0]
                    some_copy = uuid.UUID(
                        first.decode() if isinstance(first, bytes) else str(first)
                    )

                async def ping(_i: int) -> object:
                    return await raw.ping()

                async def listing(_i: int) -> object:
                    return await store.list_user_sessions(PROBE_USER, limit=20)

                async def cleanup(_i: int) -> object:
                    report = await store.cleanup_expired_sessions()
                    assert report.archived == 0, report
                    return report

                async def get(_i: int, target: uuid.UUID = some_copy) -> object:
                    return await store.get_session(target)

                floors: dict[str, Operation] = {"ping": ping}
                timings = {
                    "list": await measure("list", listing, samples=samples, floors=floors),
                    "cleanup": await measure("cleanup", cleanup, samples=samples, floors=floors),
                    "get": await measure("get", get, samples=samples, floors=floors),
                }
                for name, timing in timings.items():
                    base.setdefault(name, timing)
                cells = [f"{size:,}", f"{per_copy:,.0f}", f"{load_s:.0f}"]
                for name, timing in timings.items():
                    floor = timing.floor_p50_ms["ping"]
                    growth = timing.p50_ms / base[name].p50_ms
                    cells += [
                        f"{timing.p50_ms:.3f}",
                        f"{timing.p50_ms / floor:.1f}x",
                        f"{growth:.2f}x",
                    ]
                cells.append(f"{(await used_memory(raw)) / 2**30:.2f}")
                rows.append(cells)
                print(" | ".join(cells), flush=True)
            assert len(probe) == PROBE_SESSIONS
        await raw.aclose()
    finally:
        server.stop()
    header = ["active sessions", "bytes/session (copies)", "load s"]
    for name in ("list", "cleanup (none due)", "get"):
        header += [f"{name} p50 ms", "x ping", f"x at {sizes[0]:,}"]
    header.append("Redis used GiB")
    body = (
        table(rows, header)
        + f"\n\nA session written through the store (4 assets, {QUERIES} tracked queries, a "
        f"context) takes {per_written:,.0f} bytes of Redis memory (`INFO memory`, "
        f"{TEMPLATES} sessions); copies of those sessions (DUMP/RESTORE, see the script's "
        f"docstring) take the figure in the table. {USERS:,} owners; the probe user's "
        f"{PROBE_SESSIONS} sessions are listed 20 at a time. Each p50 of {samples} samples "
        "interleaved with a PING on the same client (x ping), and over its p50 at the "
        "smallest size (target: within 1.20x). `python benchmarks/bench_scale_redis.py "
        f"--sizes {' '.join(map(str, sizes))} --samples {samples}`."
    )
    write_section("scale-redis", "Redis at scale: a million active sessions (issue 18)", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    if sizes[0] < PROBE_SESSIONS + TEMPLATES:
        parser.error(f"the smallest size must hold at least {PROBE_SESSIONS + TEMPLATES}")
    asyncio.run(run(sizes, args.samples))


if __name__ == "__main__":
    main()
