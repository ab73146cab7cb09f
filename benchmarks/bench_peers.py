"""FIML's SQL tiers against the peers' session stores, side by side, as ratios to floors.

    python benchmarks/bench_peers.py              # both tiers, 200 samples per figure
    python benchmarks/bench_peers.py --tier sqlite --samples 100
    python benchmarks/bench_peers.py --smoke --without-peers --no-write   # the tests' run

The peers are the stores issue 15 quotes: the OpenAI Agents SDK's ``SQLiteSession`` and
``SQLAlchemySession`` (package ``openai-agents``) and LangGraph's SQLite and PostgreSQL
checkpoint savers (``langgraph-checkpoint-sqlite``, ``langgraph-checkpoint-postgres``), each
called through its public API only. They are not FIML dependencies: install them into a
benchmark-only virtualenv (``pip install -e '.[all]' -r benchmarks/requirements-peers.txt``).
A peer that is not installed is skipped with a note, so the script runs anywhere FIML does.

Operations, on each tier (SQLite: one WAL-mode file per store; PostgreSQL: one database):

- append one item to a session (a thread, for LangGraph) already holding N items;
- read the latest 20 items of a session holding 1,000 (or more: the appends above grew it);
- 50 concurrent appends to one fresh session (wall time of the batch);
- the spec's 50-query workflow: open a session, track 50 queries each with its context update,
  read the session back. FIML also runs it on Redis + PostgreSQL, the reference of the
  "<= 3x" target for PostgreSQL alone.

What an item is: for FIML a ``QueryRecord`` tracked by ``SessionStore.append_query``; for the
OpenAI sessions one input item (a message whose content is the same query as JSON) added by
``add_items``; for LangGraph one checkpoint (``aput``) whose channel values hold the query,
read back by ``alist(limit=20)``. The workflow's context update rides in the same call for
every contestant (FIML's ``context=`` argument, the item's content, the checkpoint's values).

Every contestant of one figure, the floor included, is timed in the same loop: each round
times each contestant once, the order rotating from round to round, so a loaded machine
slows all of them alike. Floors: one aiosqlite INSERT + commit (SQLite) and one asyncpg
INSERT + commit (PostgreSQL), from benchmarks/bench_store.py; for the batch figures the floor
is the same number of INSERT + commits one after the other. Results replace the ``peers``
section of benchmarks/RESULTS.md.

PostgreSQL runs in a database of its own (``FIML_BENCH_PEERS_DATABASE_URL``, default
``fiml_bench_peers``), created if absent; FIML's schema and the peers' tables are dropped and
made again first. Redis (``FIML_BENCH_REDIS_URL``, default database 12) is not flushed: the
workflow writes fresh sessions only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench_store import postgres_floor, sqlite_floor
from harness import Timing, fresh_postgres, table, write_section

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore

PG_URL = os.environ.get(
    "FIML_BENCH_PEERS_DATABASE_URL",
    "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_bench_peers",
)
REDIS_URL = os.environ.get("FIML_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
FLOOR = "floor"
PEER_TABLES = (
    "bench_items",
    "agent_messages",
    "agent_sessions",
    "checkpoint_writes",
    "checkpoint_blobs",
    "checkpoints",
    "checkpoint_migrations",
)
"""The tables the peers (and the logged-table row) create in PostgreSQL, dropped first."""


@dataclass(frozen=True)
class Config:
    """How much work one run does."""

    samples: int = 200
    warmup: int = 10
    lengths: tuple[int, ...] = (0, 20, 1_000)
    rounds: int = 15
    """Rounds of the batch figures (concurrent appends, workflow)."""
    concurrent: int = 50
    workflow_queries: int = 50
    read_limit: int = 20


SMOKE = Config(samples=3, warmup=1, lengths=(0, 20), rounds=1, concurrent=5, workflow_queries=5)


def _payload(i: int) -> dict[str, Any]:
    return {
        "query_type": "price",
        "parameters": {"symbol": "AAPL", "i": i},
        "result_summary": "AAPL: $175.43 (+2.30%)",
        "execution_time_ms": 3.2,
        "cache_hit": i % 3 == 0,
    }


def _context(i: int) -> dict[str, Any]:
    return {"last_symbol": "AAPL", "last_price": 175.43, "step": i}


class Contestant:
    """One store under test: sessions (threads) it can open, append to and read."""

    name: str

    async def open_thread(self) -> Any:
        """A new, empty session; what the other methods take to address it."""
        raise NotImplementedError

    async def append(self, thread: Any, i: int, context: dict[str, Any] | None) -> None:
        """Store item ``i`` (and ``context`` with it) in ``thread``."""
        raise NotImplementedError

    async def latest(self, thread: Any, limit: int) -> int:
        """Read the ``limit`` newest items of ``thread``; how many came back."""
        raise NotImplementedError


class Fiml(Contestant):
    def __init__(self, name: str, store: SessionStore) -> None:
        self.name = name
        self.store = store

    async def open_thread(self) -> Any:
        session = await self.store.create_session(
            ["AAPL"], "equity", user_id="bench", ttl_hours=100
        )
        return session.id

    async def append(self, thread: Any, i: int, context: dict[str, Any] | None) -> None:
        await self.store.append_query(thread, QueryRecord(**_payload(i)), context=context)

    async def latest(self, thread: Any, limit: int) -> int:
        session = await self.store.get_session(thread, history_limit=limit)
        assert session is not None
        return len(session.state.history.queries)


class OpenAISession(Contestant):
    """An OpenAI Agents SDK session class; one instance per session, as the SDK has it."""

    def __init__(self, name: str, make: Callable[[str], Any]) -> None:
        self.name = name
        self.make = make
        self.opened: list[Any] = []

    async def open_thread(self) -> Any:
        session = self.make(uuid4().hex)
        self.opened.append(session)
        return session

    async def append(self, thread: Any, i: int, context: dict[str, Any] | None) -> None:
        content = {"query": _payload(i), "context": context}
        await thread.add_items([{"role": "user", "content": json.dumps(content)}])

    async def latest(self, thread: Any, limit: int) -> int:
        return len(await thread.get_items(limit=limit))

    def close(self) -> None:
        for session in self.opened:
            close = getattr(session, "close", None)  # SQLiteSession has one, others do not
            if close is not None:
                close()


@dataclass
class _Thread:
    """A LangGraph thread and the config of its newest checkpoint (the next one's parent)."""

    config: dict[str, Any]
    version: str | None = None


class LangGraphSaver(Contestant):
    def __init__(self, name: str, saver: Any) -> None:
        self.name = name
        self.saver = saver

    async def open_thread(self) -> Any:
        return _Thread({"configurable": {"thread_id": uuid4().hex, "checkpoint_ns": ""}})

    async def append(self, thread: Any, i: int, context: dict[str, Any] | None) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        version = self.saver.get_next_version(thread.version, None)
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"query": _payload(i), "context": context}
        checkpoint["channel_versions"] = {"query": version, "context": version}
        metadata = {"source": "loop", "step": i}
        versions = {"query": version, "context": version}
        thread.version = version
        thread.config = await self.saver.aput(thread.config, checkpoint, metadata, versions)

    async def latest(self, thread: Any, limit: int) -> int:
        config = {"configurable": {"thread_id": thread.config["configurable"]["thread_id"]}}
        return len([t async for t in self.saver.alist(config, limit=limit)])


class LoggedTable(Contestant):
    """Plain asyncpg on an ordinary (WAL-logged) table: one INSERT + commit per append, one
    indexed SELECT per read. Not a peer: what a durable write costs PostgreSQL itself, since
    the floor's temporary table is not WAL-logged and its commit waits for no flush."""

    name = "asyncpg on a logged table"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def open_thread(self) -> Any:
        return uuid4()

    async def append(self, thread: Any, i: int, context: dict[str, Any] | None) -> None:
        body = json.dumps({"query": _payload(i), "context": context})
        await self.pool.execute(
            "INSERT INTO bench_items (thread, body) VALUES ($1, $2)", thread, body
        )

    async def latest(self, thread: Any, limit: int) -> int:
        rows = await self.pool.fetch(
            "SELECT body FROM bench_items WHERE thread = $1 ORDER BY seq DESC LIMIT $2",
            thread,
            limit,
        )
        return len(rows)


NOT_PEERS = ("FIML", "FIML on Redis + PostgreSQL", LoggedTable.name)


class Floor(Contestant):
    """The raw driver floor: each "append" is one INSERT + commit."""

    def __init__(self, label: str, insert: Callable[[int], Awaitable[object]]) -> None:
        self.name = FLOOR
        self.label = label
        self.insert = insert

    async def open_thread(self) -> Any:
        return None

    async def append(self, thread: Any, i: int, context: dict[str, Any] | None) -> None:
        await self.insert(i)

    async def latest(self, thread: Any, limit: int) -> int:
        await self.insert(0)
        return limit


@dataclass
class Tier:
    name: str
    floor: Floor
    contestants: list[Contestant]
    skipped: list[str] = field(default_factory=list)
    workflow_only: list[Contestant] = field(default_factory=list)
    """Contestants of the workflow figure only (FIML on Redis + PostgreSQL)."""


Step = Callable[[int], Awaitable[object]]


async def side_by_side(steps: dict[str, Step], samples: int, warmup: int) -> dict[str, Timing]:
    """Time every step ``samples`` times, one of each per round, rotating their order."""
    names = list(steps)
    for i in range(warmup):
        for name in names:
            await steps[name](-1 - i)
    durations: dict[str, list[float]] = {name: [] for name in names}
    for i in range(samples):
        turn = i % len(names)
        for name in names[turn:] + names[:turn]:
            start = time.perf_counter()
            await steps[name](i)
            durations[name].append((time.perf_counter() - start) * 1000)
    timings: dict[str, Timing] = {}
    for name, ds in durations.items():
        ds.sort()
        p95 = ds[min(len(ds) - 1, int(len(ds) * 0.95))]
        timings[name] = Timing(name, samples, statistics.median(ds), p95)
    return timings


async def _append_at(tier: Tier, length: int, config: Config) -> dict[str, Timing]:
    everyone: list[Contestant] = [tier.floor, *tier.contestants]
    steps: dict[str, Step] = {}
    for c in everyone:
        if length == 0:
            # A fresh session per sample; negative indexes (the warm-up) take the tail.
            fresh = [await c.open_thread() for _ in range(config.samples + config.warmup)]

            async def first(i: int, c: Contestant = c, fresh: list[Any] = fresh) -> None:
                await c.append(fresh[i], i, None)

            steps[c.name] = first
        else:
            thread = await _seeded(c, length)

            async def more(i: int, c: Contestant = c, thread: Any = thread) -> None:
                await c.append(thread, length + i, None)

            steps[c.name] = more
    return await side_by_side(steps, config.samples, config.warmup)


async def _seeded(c: Contestant, length: int) -> Any:
    thread = await c.open_thread()
    if not isinstance(c, Floor):
        for i in range(length):
            await c.append(thread, i, None)
    return thread


async def _read_latest(tier: Tier, config: Config) -> dict[str, Timing]:
    length = max(config.lengths)
    steps: dict[str, Step] = {FLOOR: tier.floor.insert}
    for c in tier.contestants:
        thread = await _seeded(c, max(length, config.read_limit))

        async def read(_i: int, c: Contestant = c, thread: Any = thread) -> None:
            count = await c.latest(thread, config.read_limit)
            assert count == config.read_limit, (c.name, count)

        steps[c.name] = read
    return await side_by_side(steps, config.samples, config.warmup)


async def _concurrent(tier: Tier, config: Config) -> dict[str, Timing]:
    n = config.concurrent

    async def floor(i: int) -> None:
        for k in range(n):
            await tier.floor.insert(i * n + k)

    steps: dict[str, Step] = {FLOOR: floor}
    bursts: list[tuple[Contestant, Any]] = []
    for c in tier.contestants:

        async def burst(i: int, c: Contestant = c) -> None:
            thread = await c.open_thread()
            await asyncio.gather(*(c.append(thread, i * n + k, None) for k in range(n)))
            bursts.append((c, thread))

        steps[c.name] = burst
    timings = await side_by_side(steps, config.rounds, 1)
    # Untimed, so every contestant's figure is the appends alone: each kept all n (LangGraph's
    # checkpoint ids are unique within a process: checkpoints of one parent do not collide).
    for c, thread in bursts:
        assert await c.latest(thread, n) == n, c.name
    return timings


async def _workflow(tier: Tier, config: Config) -> dict[str, Timing]:
    n = config.workflow_queries

    async def floor(i: int) -> None:
        for k in range(n + 2):  # the open, the n queries, the read
            await tier.floor.insert(i * n + k)

    steps: dict[str, Step] = {FLOOR: floor}
    for c in [*tier.contestants, *tier.workflow_only]:

        async def work(i: int, c: Contestant = c) -> None:
            thread = await c.open_thread()
            for k in range(n):
                await c.append(thread, k, _context(k))
            assert await c.latest(thread, config.read_limit) == min(n, config.read_limit)

        steps[c.name] = work
    return await side_by_side(steps, config.rounds, 1)


def _wal_file(path: Path) -> Path:
    """An SQLite file in WAL mode (the mode persists in the file), for a peer to open."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
    return path


@asynccontextmanager
async def _sqlite_tier(directory: Path, with_peers: bool) -> AsyncIterator[Tier]:
    async with AsyncExitStack() as stack:
        insert = await stack.enter_async_context(sqlite_floor(directory))
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{directory / 'fiml.db'}",
            session_max_queries_per_session=1_000_000,
        )
        store = await stack.enter_async_context(SessionStore(settings))
        tier = Tier("SQLite", Floor("aiosqlite INSERT + commit", insert), [Fiml("FIML", store)])
        if with_peers:
            await _sqlite_peers(tier, directory, stack)
        yield tier


async def _sqlite_peers(tier: Tier, directory: Path, stack: AsyncExitStack) -> None:
    try:
        from agents.memory import SQLiteSession
    except ImportError:
        tier.skipped.append("OpenAI Agents `SQLiteSession` (`openai-agents` not installed)")
    else:
        path = _wal_file(directory / "openai.db")
        openai = OpenAISession("OpenAI SQLiteSession", lambda sid: SQLiteSession(sid, path))
        stack.callback(openai.close)
        tier.contestants.append(openai)
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        tier.skipped.append(
            "LangGraph `AsyncSqliteSaver` (`langgraph-checkpoint-sqlite` not installed)"
        )
    else:
        import aiosqlite

        # Its public constructor takes a connection: ours, at FIML's durability (WAL with
        # synchronous=NORMAL: no fsync per commit), so the two do the same work on disk.
        conn = await aiosqlite.connect(_wal_file(directory / "langgraph.db"))
        stack.push_async_callback(conn.close)
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        tier.contestants.append(LangGraphSaver("LangGraph AsyncSqliteSaver", saver))


@asynccontextmanager
async def _postgres_tier(pg_url: str, redis_url: str, with_peers: bool) -> AsyncIterator[Tier]:
    await fresh_postgres(pg_url, drop_tables=PEER_TABLES)
    async with AsyncExitStack() as stack:
        insert = await stack.enter_async_context(postgres_floor(pg_url.replace("+asyncpg", "")))
        big = 1_000_000
        alone = Settings(database_url=pg_url, session_max_queries_per_session=big)
        store = await stack.enter_async_context(SessionStore(alone))
        tier = Tier("PostgreSQL", Floor("asyncpg INSERT + commit", insert), [Fiml("FIML", store)])
        both = Settings(
            database_url=pg_url, redis_url=redis_url, session_max_queries_per_session=big
        )
        redis_store = await stack.enter_async_context(SessionStore(both))
        tier.workflow_only.append(Fiml("FIML on Redis + PostgreSQL", redis_store))
        tier.contestants.append(LoggedTable(await _logged_table(pg_url, stack)))
        if with_peers:
            await _postgres_peers(tier, pg_url, stack)
        yield tier


async def _logged_table(pg_url: str, stack: AsyncExitStack) -> Any:
    import asyncpg

    pool = await asyncpg.create_pool(pg_url.replace("+asyncpg", ""), min_size=1, max_size=10)
    stack.push_async_callback(pool.close)
    await pool.execute(
        "CREATE TABLE bench_items (thread uuid NOT NULL, seq bigserial, body text NOT NULL,"
        " PRIMARY KEY (thread, seq))"
    )
    return pool


async def _postgres_peers(tier: Tier, pg_url: str, stack: AsyncExitStack) -> None:
    try:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError:
        tier.skipped.append("OpenAI Agents `SQLAlchemySession` (`openai-agents` not installed)")
    else:
        engine = create_async_engine(pg_url)
        stack.push_async_callback(engine.dispose)
        # The first session creates the tables; the others skip that check, as an
        # application that made its tables once would.
        await SQLAlchemySession("setup", engine=engine, create_tables=True).get_items()
        tier.contestants.append(
            OpenAISession(
                "OpenAI SQLAlchemySession",
                lambda sid: SQLAlchemySession(sid, engine=engine),
            )
        )
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        tier.skipped.append(
            "LangGraph `AsyncPostgresSaver` (`langgraph-checkpoint-postgres` not installed)"
        )
    else:
        conninfo = pg_url.replace("+asyncpg", "")
        saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(conninfo))
        await saver.setup()
        tier.contestants.append(LangGraphSaver("LangGraph AsyncPostgresSaver", saver))


@dataclass
class Figure:
    """One operation on one tier: every contestant's timing, the floor's under ``FLOOR``."""

    tier: str
    operation: str
    floor_name: str
    timings: dict[str, Timing]

    def ratio(self, name: str) -> float:
        return self.timings[name].p50_ms / self.timings[FLOOR].p50_ms


async def run_tier(tier: Tier, config: Config) -> list[Figure]:
    figures: list[Figure] = []

    def keep(operation: str, timings: dict[str, Timing]) -> None:
        figures.append(Figure(tier.name, operation, tier.floor.label, timings))

    for length in config.lengths:
        keep(f"append 1 item, {length:,} there", await _append_at(tier, length, config))
    keep(f"read latest {config.read_limit}", await _read_latest(tier, config))
    keep(f"{config.concurrent} concurrent appends", await _concurrent(tier, config))
    keep(f"{config.workflow_queries}-query workflow", await _workflow(tier, config))
    return figures


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable"


PACKAGES = (
    "openai-agents",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "psycopg",
    "SQLAlchemy",
    "aiosqlite",
    "asyncpg",
)


def _versions() -> str:
    """The installed versions of the peers and of the drivers under every contestant."""
    from importlib.metadata import PackageNotFoundError, version

    found: list[str] = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def _commit() -> str:
    """The commit FIML's code was measured at, and whether its tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "fiml"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} (with uncommitted changes to fiml/)" if dirty else head


def report(figures: list[Figure], tiers: list[Tier], load: list[str]) -> str:
    parts: list[str] = []
    for tier in tiers:
        mine = [f for f in figures if f.tier == tier.name]
        if not mine:
            continue
        names = [n for n in mine[-1].timings if n != FLOOR]
        rows: list[list[str]] = []
        for f in mine:
            for name in [FLOOR, *names]:
                if name not in f.timings:
                    continue
                t = f.timings[name]
                label = f.floor_name if name == FLOOR else name
                rows.append(
                    [
                        f.operation,
                        label,
                        f"{t.p50_ms:.3f}",
                        f"{t.p95_ms:.3f}",
                        f"{f.ratio(name):.2f}",
                    ]
                )
        parts.append(f"### {tier.name}\n")
        parts.append(table(rows, ["operation", "store", "p50 ms", "p95 ms", "x floor"]))
        if tier.skipped:
            parts.append("\nSkipped (not installed): " + "; ".join(tier.skipped) + ".")
        parts.append("")
    parts.append("### Verdicts\n")
    parts.append(_verdicts(figures))
    parts.append(
        "\nBatch figures (concurrent appends, workflow) are wall times of the whole batch; their"
        " floor is the same number of INSERT + commits one after the other. Machine load"
        f" (`uptime`) before and after: {load[0]} / {load[-1]}. FIML at commit {_commit()};"
        f" versions: {_versions()}."
    )
    return "\n".join(parts)


def _verdicts(figures: list[Figure]) -> str:
    rows: list[list[str]] = []
    for f in figures:
        fiml = f.timings["FIML"]
        for name, t in f.timings.items():
            if name == FLOOR or name in NOT_PEERS:
                continue
            ratio = fiml.p50_ms / t.p50_ms
            verdict = (
                "even (within 5%)" if 0.95 <= ratio <= 1.05 else "ahead" if ratio < 1 else "behind"
            )
            rows.append([f.tier, f.operation, f"FIML vs {name}", f"{ratio:.2f}x its time", verdict])
        if f.tier == "PostgreSQL" and f.operation.startswith("append"):
            ratio = f.ratio("FIML")
            verdict = "met" if ratio <= 2 else "missed"
            rows.append([f.tier, f.operation, "FIML <= 2x asyncpg floor", f"{ratio:.2f}x", verdict])
            logged = f.timings.get(LoggedTable.name)
            if logged is not None:
                durable = fiml.p50_ms / logged.p50_ms
                label = "FIML vs asyncpg on a logged table (no target)"
                rows.append([f.tier, f.operation, label, f"{durable:.2f}x", "for scale"])
        redis = f.timings.get("FIML on Redis + PostgreSQL")
        if redis is not None:
            ratio = fiml.p50_ms / redis.p50_ms
            verdict = "met" if ratio <= 3 else "missed"
            rows.append(
                [
                    f.tier,
                    f.operation,
                    "FIML <= 3x FIML on Redis + PostgreSQL",
                    f"{ratio:.2f}x",
                    verdict,
                ]
            )
    return table(rows, ["tier", "operation", "comparison", "measured", "verdict"])


async def run(
    *,
    tiers: list[str],
    config: Config,
    with_peers: bool,
    pg_url: str = PG_URL,
    redis_url: str = REDIS_URL,
) -> str:
    """Run the chosen tiers and return the report (Markdown)."""
    load = [_uptime()]
    figures: list[Figure] = []
    done: list[Tier] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in tiers:
            async with _sqlite_tier(Path(tmp), with_peers) as tier:
                figures += await run_tier(tier, config)
                done.append(tier)
        if "postgres" in tiers:
            async with _postgres_tier(pg_url, redis_url, with_peers) as tier:
                figures += await run_tier(tier, config)
                done.append(tier)
    load.append(_uptime())
    return report(figures, done, load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--samples", type=int, default=Config.samples)
    parser.add_argument("--rounds", type=int, default=Config.rounds)
    parser.add_argument("--smoke", action="store_true", help="the smallest run (for the tests)")
    parser.add_argument("--without-peers", action="store_true", help="FIML and the floors only")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md alone")
    args = parser.parse_args()
    config = SMOKE if args.smoke else Config(samples=args.samples, rounds=args.rounds)
    tiers = ["sqlite", "postgres"] if args.tier == "both" else [args.tier]
    body = asyncio.run(run(tiers=tiers, config=config, with_peers=not args.without_peers))
    print(body)
    if not args.no_write:
        body += "\n\n" + NOTES
        write_section("peers", "FIML against the peers on the SQL tiers (issue 15)", body)
    sys.stdout.flush()


NOTES = """\
**Against issue 15's target** ("on both SQL tiers, ahead of the peers on the same work"):
**missed.** Seven runs in 15 minutes (18:27-18:42 UTC, 1,000 samples and 40 rounds each but
the first, 300 and 20), FIML at the commit named above, the peers at the versions above.
Per operation, FIML's p50 as a multiple of the peer's (below 1: FIML ahead); OpenAI's session
is `SQLiteSession` on SQLite and `SQLAlchemySession` on PostgreSQL:

| tier | operation | vs OpenAI's session | vs LangGraph's saver |
|---|---|---|---|
| SQLite | append, new session | ahead, 0.65-0.91x | behind, 3.3-4.8x |
| SQLite | append, 20 there | behind, 1.44-1.66x | behind, 3.6-4.7x |
| SQLite | append, 1,000 there | behind, 1.35-1.62x | behind, 3.5-4.6x |
| SQLite | read latest 20 | behind, 2.3-3.9x | ahead, 0.11-0.26x |
| SQLite | 50 concurrent appends | behind, 1.91-2.12x | behind, 3.5-7.7x |
| SQLite | 50-query workflow | behind, 1.55-2.17x | behind, 5.5-7.9x |
| PostgreSQL | append, new session | ahead, 0.43-0.49x | behind, 1.6-1.7x |
| PostgreSQL | append, 20 there | ahead, 0.65-0.79x | behind, 1.6-2.0x |
| PostgreSQL | append, 1,000 there | ahead, 0.64-0.80x | behind, 1.6-2.1x |
| PostgreSQL | read latest 20 | behind, 1.15-1.32x | ahead, 0.12-0.16x |
| PostgreSQL | 50 concurrent appends | behind, 1.10-1.20x | behind, 4.5-5.3x |
| PostgreSQL | 50-query workflow | ahead, 0.72-0.87x | behind, 1.7-2.3x |

Every verdict held in every run. LangGraph's savers write every figure faster than FIML on
both tiers; FIML reads 20 items 4-9x faster than they do (they decode whole checkpoints).
FIML is ahead of OpenAI's `SQLAlchemySession` on PostgreSQL except on reads and on 50
writers of one session, and ahead of OpenAI's `SQLiteSession` only on the first append of
a session. The concurrent figures come from the last four runs only (see the next note).

**What is compared.** See the docstring of benchmarks/bench_peers.py for what an item is for
each store. FIML does more per append than the peers: it validates the query, checks the
session's state (expiry, status, limits), skips an already recorded query id, keeps the
history's counters and records the query's timeline event, in one transaction. Durability:
FIML, the aiosqlite floor and LangGraph's saver (on a connection the benchmark opens and
hands to its public constructor) run SQLite in WAL mode with `synchronous=NORMAL`; OpenAI's
`SQLiteSession` (0.24.0 sets WAL mode itself) keeps sqlite3's default `synchronous=FULL`
(an fsync per commit), which its figures carry. The 50 concurrent appends are timed alone
for every store; that each kept all 50 is checked afterwards, untimed, for LangGraph too
(its checkpoint ids are unique within a process). Before 18:33 the check was timed and left
LangGraph out, so the first three runs' concurrent figures are not counted.

**The PostgreSQL floor is not a durable write.** The floor of the "<= 2x" target (from
bench_store.py) inserts into a temporary table, which is not WAL-logged: its commit waits
for no WAL flush. The same INSERT + commit into an ordinary table ("asyncpg on a logged
table") costs several times more here (3-4x); no durable store can be within 2x of the
temporary table's floor on this machine, and the target is better read against the logged
row: `append_query` took 2.5-2.9x it in these runs (7.9-11.2x the temporary table), so the
target is missed either way.

**Where FIML's PostgreSQL time goes.** An earlier profile (cProfile of 300 `append_query`
calls with a context update, history 20, on the loaded machine) found 8 messages per call:
the pool's pre-ping (3 round trips), BEGIN, `SELECT ... FOR UPDATE`, the INSERT, the UPDATE,
COMMIT. Since then (issue 15 item 5) the pool pings no connection, and a write of one query
at most is 2 round trips on one connection in autocommit mode: the session's row read
without a lock, then one statement, the version-checked UPDATE with the query's, its
timeline events' and its search terms' INSERTs as data-modifying CTEs selecting from it,
whose commit waits for the WAL flush; about 0.9 ms of the process's CPU per append remains
(`bench_store.py --deployment postgres --append-cpu`). Reads are their two SELECTs. With 50
writers on one session most lose the version check and take the locked path (`SELECT ...
FOR UPDATE`, then their statements, one transaction each, one after the other): 174-280 ms
for the 50, LangGraph's 33-62 ms (its checkpoints are new rows, no shared row to update).

**Where FIML's SQLite time goes.** An append is one hop to the database thread and
BEGIN IMMEDIATE, SELECT, the query's INSERT, its timeline event's INSERT, UPDATE, COMMIT
through SQLAlchemy Core. Before the timelines and the search index landed and the hot
statements went back to SQLAlchemy Core (the stock path), it cost about 0.5 ms of the
process's CPU, and the 05:40 UTC run of this benchmark had it at 0.41-0.46 ms p50 (2.9-4.3x
the aiosqlite floor); here it took 0.63-0.82 ms (6.6-9.0x), not broken down further. A
read (two SELECTs, then 20 `QueryRecord`s and the `Session` validated by pydantic) costs
2.3-3.9x OpenAI's, which returns `json.loads` of 20 rows; a cheaper read path
(validation-free construction of stored, already checked records) is where that gap is; for
appends, the same single-statement write as on PostgreSQL would spare the row read's hop
through SQLAlchemy.

**Across runs.** The machine (2 cores) was shared, load average 1.3-3.7 over the seven runs;
batch figures have wide p95s. Ranges of p50s over the runs: SQLite appends with history,
FIML 0.63-0.79 ms, OpenAI 0.43-0.55 ms, LangGraph 0.16-0.21 ms; SQLite read, FIML
0.49-0.61 ms, OpenAI 0.13-0.23 ms, LangGraph 2.0-5.2 ms; PostgreSQL appends with history,
FIML 1.42-2.19 ms, OpenAI 1.81-3.07 ms, LangGraph 0.70-1.23 ms, the logged-table INSERT +
commit 0.49-0.76 ms; PostgreSQL read, FIML 1.13-1.75 ms, OpenAI 0.94-1.50 ms, LangGraph
8.9-13.9 ms. The workflow on PostgreSQL alone took 82-137 ms, 4.7-5.6x the Redis +
PostgreSQL one (16-28 ms; target <= 3x: missed); on SQLite 46-71 ms, against OpenAI's 21-39
ms and LangGraph's 6.7-11.3 ms."""

if __name__ == "__main__":
    main()
