"""Load over HTTP: stateless MCP servers on one Redis + PostgreSQL, many concurrent agents.

Starts ``--servers`` ``python -m fiml.mcp --http --stateless`` processes (offline quotes)
sharing one Redis database and one PostgreSQL database, then, at each level of
``--clients``, runs that many concurrent agents for ``--duration`` seconds. Each agent opens
an analysis session, then (once every agent has one) tracks searches in it until the time
is up, calling the servers in turn, as a round-robin load balancer would spread its calls.
The agents speak MCP's JSON-RPC over streamable HTTP with plain httpx (one POST per tool
call, the answer a JSON body or a server-sent event), because the SDK's client costs about
four times as much CPU per call, which on a small machine would be taken from the servers.

The agents speak the protocol the MCP SDK's own client speaks by default, 2026-07-28: each
call a self-contained POST, its version in an ``MCP-Protocol-Version`` header and in the
request's ``_meta``, with the ``Mcp-Method`` and ``Mcp-Name`` headers. ``--protocol legacy``
makes them speak as a handshake-era client does (no version header), which the SDK serves
on its older stateless path: a transport, a dispatcher and their tasks per request.

Server CPU (user + system of the server processes) is counted over the tracking phase only
and divided by the acknowledged tracked searches. Two references are measured at each level
in the same run, driven by the same clients the same way: the floor, as many
``benchmarks/http_floor.py`` processes (a minimal Starlette JSON-RPC echo behind the same
uvicorn), and the bare SDK, as many ``benchmarks/http_bare_sdk.py`` processes (``MCPServer``
tools that echo their arguments, with FIML's token check, served by FIML's ``serve_http``).
The report gives the ratio of FIML's CPU figure to the floor's, and what FIML costs beyond
the bare SDK: its own tool work and the store's.

Afterwards every session is read back from the store and compared with what the servers
acknowledged: the same query ids in the same order, and exact counters (total queries,
cache hits, per-type counts). Any acknowledged query missing is a *lost* query; any failed
call is an *unexpected error*. Both must be zero.

    python benchmarks/load_http.py                      # 2 servers; 10, 100, 200 clients
    python benchmarks/load_http.py --protocol 2026-07-28 legacy   # both protocols
    python benchmarks/load_http.py --clients 200 --duration 45
    python benchmarks/load_http.py --write-results      # and record it in RESULTS.md

The PostgreSQL database (default ``fiml_load``) is created if absent and emptied, and the
Redis database (default db 10) is flushed, at the start of every run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from mcp_types.version import LATEST_MODERN_VERSION

from fiml.core.config import Settings
from fiml.mcp import TokenFile
from fiml.sessions.store import ALL_QUERIES, SessionStore

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_load"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
FLOOR_SCRIPT = Path(__file__).with_name("http_floor.py")
BARE_SDK_SCRIPT = Path(__file__).with_name("http_bare_sdk.py")
LEGACY = "legacy"
"""The agents' protocol when they speak as a handshake-era client: no version header."""
PROTOCOLS = (LATEST_MODERN_VERSION, LEGACY)
READY_LINE = b"Uvicorn running on"
STARTUP_SECONDS = 60
CALL_TIMEOUT_SECONDS = 60
MAX_CALLS_PER_CLIENT = 100_000
KEEPALIVE_SECONDS = 1.0
"""How long an agent reuses an idle connection. It must stay below the server's keep-alive
timeout (uvicorn's default, 5 s): otherwise the server may close a connection just as the
agent sends a request on it, and the agent sees a ReadError for a call never received."""
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA")
COINS = ("BTC", "ETH", "SOL")


@dataclass
class AgentRecord:
    """What one agent did: its session, the queries the servers acknowledged, its errors."""

    user: str
    session_id: str | None = None
    acked_ids: list[str] = field(default_factory=list)
    """Each acknowledged call's place in the session's history (its total_queries), in order."""
    acked_types: Counter[str] = field(default_factory=Counter)
    acked_hits: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class FloorReport:
    """A reference's calls at one level: the same clients against echo servers."""

    calls: int
    duration_s: float
    server_cpu_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def server_cpu_ms_per_call(self) -> float:
        """Echo servers' CPU time per answered call."""
        return 1000 * self.server_cpu_s / self.calls if self.calls else 0.0

    @property
    def throughput(self) -> float:
        """Answered calls per second, over the calling phase."""
        return self.calls / self.duration_s if self.duration_s else 0.0


@dataclass
class LoadReport:
    """The outcome of one run, verified against the store."""

    servers: int
    clients: int
    duration_s: float
    tracked: int
    sessions: int
    lost: int
    mismatched_sessions: int
    errors: int
    p50_ms: float
    p99_ms: float
    error_samples: list[str]
    server_cpu_s: float = 0.0
    load_average: float = 0.0
    protocol: str = LATEST_MODERN_VERSION
    floor: FloorReport | None = None
    bare_sdk: FloorReport | None = None

    @property
    def throughput(self) -> float:
        """Acknowledged tracked queries per second, over the tracking phase."""
        return self.tracked / self.duration_s if self.duration_s else 0.0

    @property
    def server_cpu_ms_per_query(self) -> float:
        """Server CPU time (all servers, user + system) per acknowledged tracked query."""
        return 1000 * self.server_cpu_s / self.tracked if self.tracked else 0.0

    def row(self) -> str:
        """The run as a row of :data:`TABLE_HEADER`."""
        mine = self.server_cpu_ms_per_query
        cells = [
            self.protocol,
            f"{self.clients}",
            f"{self.duration_s:.1f}",
            f"{self.tracked:,}",
            f"{self.throughput:,.0f}",
            f"{self.p50_ms:.1f}",
            f"{self.p99_ms:.1f}",
            f"{mine:.2f}",
        ]
        bare, floor = self.bare_sdk, self.floor
        cells += (
            ["", "", ""]
            if bare is None
            else [
                f"{bare.throughput:,.0f}",
                f"{bare.server_cpu_ms_per_call:.2f}",
                f"{mine - bare.server_cpu_ms_per_call:.2f}",
            ]
        )
        cells += (
            ["", "", "", ""]
            if floor is None
            else [
                f"{floor.throughput:,.0f}",
                f"{floor.p50_ms:.1f}",
                f"{floor.server_cpu_ms_per_call:.2f}",
                f"{mine / floor.server_cpu_ms_per_call:.1f}x" if floor.server_cpu_s else "",
            ]
        )
        cells += [
            f"{self.lost}",
            f"{self.mismatched_sessions}",
            f"{self.errors}",
            f"{self.load_average:.1f}",
        ]
        return "| " + " | ".join(cells) + " |"


TABLE_HEADER = [
    "| protocol | clients | s | tracked | tracked/s | p50 ms | p99 ms | server CPU ms/call "
    "| bare SDK calls/s | bare SDK CPU ms/call | beyond bare SDK ms/call "
    "| floor calls/s | floor p50 ms | floor CPU ms/call | CPU ratio | lost "
    "| counter mismatches | unexpected errors | load avg |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def report_lines(reports: Sequence[LoadReport]) -> list[str]:
    """The runs of one invocation as a Markdown table and its legend."""
    servers = reports[0].servers if reports else 0
    return [
        *TABLE_HEADER,
        *(report.row() for report in reports),
        "",
        f"{servers} servers of each kind; {os.cpu_count()} CPUs shared with the clients, "
        "Redis, PostgreSQL and other work (load average before each level). Protocol: what "
        "the agents speak (2026-07-28, the SDK client's default: one self-contained POST "
        "per call; legacy: a handshake-era client, served on the SDK's older stateless "
        "path). Server CPU: user + system of all server processes over the tracking phase, "
        "per acknowledged call. Bare SDK: `MCPServer` tools echoing their arguments with "
        "FIML's token check, served by FIML's `serve_http` (`benchmarks/http_bare_sdk.py`); "
        "beyond bare SDK = FIML's CPU per call minus the bare SDK's, FIML's own tool and "
        "store work. Floor: a minimal Starlette JSON-RPC echo (`benchmarks/http_floor.py`) "
        "behind the same uvicorn. Both driven by the same clients in the same run; CPU "
        "ratio = FIML / floor.",
    ]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_token_file(path: Path, users: Sequence[str]) -> dict[str, str]:
    """A token file with one token per user; returns each user's token."""
    tokens = TokenFile([])
    issued = {user: tokens.add_token(user) for user in users}
    tokens.save(path)
    return issued


def _server_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env.update(
        FIML_DATABASE_URL=database_url,
        FIML_REDIS_URL=redis_url,
        FIML_MARKET_PROVIDER="offline",
        # A few users drive thousands of calls a minute here: the load measured is the
        # server's, so each user's fair share (429 past it) is set out of the way.
        FIML_HTTP_IN_FLIGHT_PER_USER="100000",
        FIML_HTTP_REQUESTS_PER_MINUTE_PER_USER="100000000",
        PYTHONUNBUFFERED="1",
    )
    return env


async def _wait_ready(process: asyncio.subprocess.Process, log: Path) -> None:
    async with asyncio.timeout(STARTUP_SECONDS):
        while READY_LINE not in await asyncio.to_thread(log.read_bytes):
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class RunningServer:
    """A server process and its MCP URL."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far; 0 where /proc is absent."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def http_servers(
    count: int, *, database_url: str, redis_url: str, tokens: Path, workdir: Path
) -> AsyncIterator[list[RunningServer]]:
    """``count`` stateless HTTP servers on free ports, running until the block ends."""
    command = ["-m", "fiml.mcp", "--http", "--stateless", "--host", "127.0.0.1"]
    async with _processes(
        count,
        [*command, "--tokens", str(tokens)],
        env=_server_env(database_url, redis_url),
        workdir=workdir,
        name="server",
    ) as running:
        yield running


@asynccontextmanager
async def floor_servers(count: int, *, workdir: Path) -> AsyncIterator[list[RunningServer]]:
    """``count`` Starlette echo servers (``http_floor.py``) on free ports."""
    async with _processes(
        count,
        [str(FLOOR_SCRIPT), "--host", "127.0.0.1"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        workdir=workdir,
        name="floor",
    ) as running:
        yield running


@asynccontextmanager
async def bare_sdk_servers(
    count: int, *, tokens: Path, workdir: Path
) -> AsyncIterator[list[RunningServer]]:
    """``count`` bare ``MCPServer`` echo servers (``http_bare_sdk.py``) on free ports."""
    async with _processes(
        count,
        [str(BARE_SDK_SCRIPT), "--host", "127.0.0.1", "--tokens", str(tokens)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        workdir=workdir,
        name="bare",
    ) as running:
        yield running


@asynccontextmanager
async def _processes(
    count: int, arguments: list[str], *, env: dict[str, str], workdir: Path, name: str
) -> AsyncIterator[list[RunningServer]]:
    """``count`` processes of ``python arguments --port P``, each on a free port."""
    processes: list[asyncio.subprocess.Process] = []
    running = []
    try:
        for n in range(count):
            port = free_port()
            log = workdir / f"{name}{n}.log"
            with log.open("wb") as sink:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *arguments,
                    *("--port", str(port)),
                    env=env,
                    cwd=workdir,
                    stdout=sink,
                    stderr=asyncio.subprocess.STDOUT,
                )
            processes.append(process)
            await _wait_ready(process, log)
            running.append(RunningServer(f"http://127.0.0.1:{port}/mcp", process.pid))
        yield running
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


class McpHttp:
    """Tool calls as JSON-RPC POSTs to stateless MCP servers, with one user's bearer token.

    With ``protocol`` a modern version (2026-07-28), each call carries what the SDK's
    client sends with it: the version in a header and in ``params._meta`` (with the
    client's info and capabilities), and the ``Mcp-Method`` and ``Mcp-Name`` headers.
    With :data:`LEGACY`, none of these: the call of a handshake-era client.
    """

    def __init__(
        self, http: httpx.AsyncClient, token: str, protocol: str = LATEST_MODERN_VERSION
    ) -> None:
        self.http = http
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        }
        self.meta: dict[str, Any] | None = None
        if protocol != LEGACY:
            self.headers.update({"MCP-Protocol-Version": protocol, "Mcp-Method": "tools/call"})
            self.meta = {
                "io.modelcontextprotocol/protocolVersion": protocol,
                "io.modelcontextprotocol/clientInfo": {"name": "load_http", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        self.ids = itertools.count(1)

    async def call(self, url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's structured result; RuntimeError for an error result or a bad reply."""
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        headers = self.headers
        if self.meta is not None:
            params["_meta"] = self.meta
            headers = {**headers, "Mcp-Name": tool}
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": "tools/call", "params": params}
        response = await self.http.post(url, json=body, headers=headers)
        response.raise_for_status()
        reply = _json_rpc_reply(response)
        result = reply.get("result")
        if not isinstance(result, dict):
            raise RuntimeError(f"{tool}: JSON-RPC error {reply.get('error')}")
        if result.get("isError") or not isinstance(result.get("structuredContent"), dict):
            raise RuntimeError(f"{tool} failed: {result.get('content')}")
        structured: dict[str, Any] = result["structuredContent"]
        return structured


def _json_rpc_reply(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("application/json"):
        reply: dict[str, Any] = response.json()
        return reply
    for line in response.text.splitlines():
        if line.startswith("data:"):
            event: dict[str, Any] = json.loads(line[5:])
            return event
    raise RuntimeError(f"no JSON-RPC message in the response: {response.text[:200]!r}")


QUERY_TYPES = {"search-by-symbol": "search_by_symbol", "search-by-coin": "search_by_coin"}
"""The query type each search tool records."""


def _search(n: int) -> tuple[str, dict[str, Any]]:
    if n % 3 == 2:
        return "search-by-coin", {"symbol": COINS[n % len(COINS)]}
    return "search-by-symbol", {"symbol": SYMBOLS[n % len(SYMBOLS)]}


async def open_session(record: AgentRecord, mcp: McpHttp, urls: Sequence[str]) -> None:
    """Open the agent's analysis session on its first server."""
    try:
        created = await mcp.call(
            urls[0],
            "create-analysis-session",
            {"assets": list(SYMBOLS[:3]), "session_type": "comparative", "ttl_hours": 2},
        )
        record.session_id = str(created["session_id"])
    except Exception as exc:
        record.errors.append(f"create: {type(exc).__name__}: {exc}")


async def run_agent(
    record: AgentRecord, mcp: McpHttp, urls: Sequence[str], deadline: float, *, echo: bool = False
) -> None:
    """Track searches in the agent's session, server after server, until ``deadline``.

    ``echo``: the servers are floor echoes; each answered call counts as acknowledged.
    """
    if record.session_id is None:
        return
    for n in range(MAX_CALLS_PER_CLIENT):
        if time.monotonic() >= deadline:
            return
        tool, arguments = _search(n)
        started = time.perf_counter()
        try:
            result = await mcp.call(
                urls[(n + 1) % len(urls)], tool, {**arguments, "session_id": record.session_id}
            )
        except Exception as exc:
            record.errors.append(f"{tool}: {type(exc).__name__}: {exc}")
            continue
        record.latencies_ms.append((time.perf_counter() - started) * 1000)
        if echo:
            record.acked_ids.append(str(n))
            continue
        # The default (brief) reply names the query's place in the session's history, which
        # is what verify() checks against the stored history; its type is the tool's.
        record.acked_ids.append(str(result["session"]["total_queries"]))
        record.acked_types[QUERY_TYPES[tool]] += 1
        record.acked_hits += bool(result["cache_hit"])


@dataclass(frozen=True)
class Phase:
    """The tracking phase of a run: wall time and the servers' CPU time in it."""

    seconds: float
    server_cpu_s: float


async def drive(
    servers: Sequence[RunningServer],
    tokens: dict[str, str],
    *,
    clients: int,
    duration: float,
    echo: bool = False,
    protocol: str = LATEST_MODERN_VERSION,
) -> tuple[list[AgentRecord], Phase]:
    """Run ``clients`` agents at once for ``duration`` seconds; their records, the phase.

    Every agent opens its session first; the phase (and the servers' CPU count) starts
    once all have one. Agent ``i`` starts on server ``i mod servers``, so sessions are
    opened on every server and each session is written through all of them. Each agent
    has its own HTTP client, as independent agents do (one shared httpx pool serializes
    hundreds of callers). ``echo``: the servers are floor echoes; agents make the same
    calls without a session. ``protocol``: what the agents speak (see :class:`McpHttp`).
    """
    users = list(tokens)
    records = [AgentRecord(user=users[i % len(users)]) for i in range(clients)]
    urls = [server.url for server in servers]
    timeout = httpx.Timeout(CALL_TIMEOUT_SECONDS)
    limits = httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS)
    async with AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=timeout, limits=limits))
            for _ in records
        ]
        agents = [
            (r, McpHttp(http, tokens[r.user], protocol), _rotated(urls, i))
            for i, (r, http) in enumerate(zip(records, https, strict=True))
        ]
        async with asyncio.timeout(duration + 3 * CALL_TIMEOUT_SECONDS):
            if echo:
                for record, _, _ in agents:
                    record.session_id = "echo"
            else:
                await asyncio.gather(*(open_session(r, m, u) for r, m, u in agents))
            cpu_before = sum(server.cpu_seconds() for server in servers)
            began = time.monotonic()
            deadline = began + duration
            await asyncio.gather(*(run_agent(r, m, u, deadline, echo=echo) for r, m, u in agents))
            elapsed = time.monotonic() - began
            cpu = sum(server.cpu_seconds() for server in servers) - cpu_before
        return records, Phase(elapsed, cpu)


def _rotated(urls: Sequence[str], start: int) -> list[str]:
    first = start % len(urls)
    return [*urls[first:], *urls[:first]]


async def verify(store: SessionStore, record: AgentRecord) -> tuple[int, bool]:
    """(queries acknowledged but not stored, whether any stored counter is off)."""
    if record.session_id is None:
        return 0, False
    session = await store.get_session(record.session_id, history_limit=ALL_QUERIES)
    if session is None or session.user_id != record.user:
        return len(record.acked_ids), True
    history = session.state.history
    stored = [str(position) for position in range(1, len(history.queries) + 1)]
    lost = len(set(record.acked_ids) - set(stored))
    exact = (
        stored == record.acked_ids
        and history.total_queries == len(record.acked_ids)
        and history.cache_hits == record.acked_hits
        and Counter(history.query_type_counts) == record.acked_types
    )
    return lost, not exact


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def report_for(
    store: SessionStore, records: list[AgentRecord], *, servers: int, phase: Phase
) -> LoadReport:
    """Check every agent's session against the store and summarize the run."""
    checks = [await verify(store, r) for r in records]
    latencies = [ms for r in records for ms in r.latencies_ms]
    errors = [e for r in records for e in r.errors]
    return LoadReport(
        servers=servers,
        clients=len(records),
        duration_s=phase.seconds,
        tracked=sum(len(r.acked_ids) for r in records),
        sessions=sum(r.session_id is not None for r in records),
        lost=sum(lost for lost, _ in checks),
        mismatched_sessions=sum(bad for _, bad in checks),
        errors=len(errors),
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p99_ms=_percentile(latencies, 0.99),
        error_samples=errors[:5],
        server_cpu_s=phase.server_cpu_s,
    )


async def run_load(
    *,
    database_url: str,
    redis_url: str,
    servers: int,
    clients: int,
    duration: float,
    users: int,
    workdir: Path,
    protocol: str = LATEST_MODERN_VERSION,
) -> LoadReport:
    """Start the servers, drive the agents, verify against the store (already emptied).

    The store that verifies is opened first, so it runs the code the servers started with.
    """
    tokens = write_token_file(workdir / "tokens.json", [f"user{n}" for n in range(users)])
    settings = Settings(database_url=database_url, redis_url=redis_url)
    async with (
        SessionStore(settings) as store,
        http_servers(
            servers,
            database_url=database_url,
            redis_url=redis_url,
            tokens=workdir / "tokens.json",
            workdir=workdir,
        ) as running,
    ):
        load_average = os.getloadavg()[0]
        records, phase = await drive(
            running, tokens, clients=clients, duration=duration, protocol=protocol
        )
        report = await report_for(store, records, servers=servers, phase=phase)
    report.load_average = load_average
    report.protocol = protocol
    return report


async def run_floor(
    *,
    servers: int,
    clients: int,
    duration: float,
    workdir: Path,
    protocol: str = LATEST_MODERN_VERSION,
) -> FloorReport:
    """The same clients, the same way, against ``servers`` Starlette echo servers."""
    tokens = {f"user{n}": "floor" for n in range(clients)}
    async with floor_servers(servers, workdir=workdir) as running:
        records, phase = await drive(
            running, tokens, clients=clients, duration=duration, echo=True, protocol=protocol
        )
    return _reference_report(records, phase)


async def run_bare_sdk(
    *,
    servers: int,
    clients: int,
    duration: float,
    users: int,
    workdir: Path,
    protocol: str = LATEST_MODERN_VERSION,
) -> FloorReport:
    """The same clients, the same way, against ``servers`` bare ``MCPServer`` echo servers."""
    tokens = write_token_file(workdir / "bare-tokens.json", [f"user{n}" for n in range(users)])
    async with bare_sdk_servers(
        servers, tokens=workdir / "bare-tokens.json", workdir=workdir
    ) as running:
        records, phase = await drive(
            running, tokens, clients=clients, duration=duration, echo=True, protocol=protocol
        )
    return _reference_report(records, phase)


def _reference_report(records: list[AgentRecord], phase: Phase) -> FloorReport:
    latencies = [ms for r in records for ms in r.latencies_ms]
    return FloorReport(
        calls=sum(len(r.acked_ids) for r in records),
        duration_s=phase.seconds,
        server_cpu_s=phase.server_cpu_s,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p99_ms=_percentile(latencies, 0.99),
        errors=sum(len(r.errors) for r in records),
    )


async def prepare_services(database_url: str, redis_url: str) -> None:
    """Create the PostgreSQL database if absent and empty it; flush the Redis database."""
    import asyncpg
    import redis.asyncio as redis

    from fiml.sessions.db import create_engine
    from fiml.sessions.schema import drop_schema, upgrade_schema

    parts = urlsplit(database_url.replace("+asyncpg", ""))
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, database="postgres"
    )
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    engine = create_engine(database_url)
    try:
        await drop_schema(engine)
        await upgrade_schema(engine)
    finally:
        await engine.dispose()
    client = redis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def main_async(args: argparse.Namespace) -> list[LoadReport]:
    """Per protocol and client level: a FIML run, a bare-SDK run and a floor run, the
    services emptied before each level."""
    reports = []
    for protocol in args.protocol:
        for clients in args.clients:
            await prepare_services(args.database_url, args.redis_url)
            with tempfile.TemporaryDirectory(prefix="fiml-load-") as tmp:
                common: dict[str, Any] = {
                    "servers": args.servers,
                    "clients": clients,
                    "duration": args.duration,
                    "workdir": Path(tmp),
                    "protocol": protocol,
                }
                report = await run_load(
                    database_url=args.database_url,
                    redis_url=args.redis_url,
                    users=args.users,
                    **common,
                )
                report.bare_sdk = await run_bare_sdk(users=args.users, **common)
                report.floor = await run_floor(**common)
            print(report.row(), flush=True)
            reports.append(report)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[10, 100, 200], help="client levels"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per level")
    parser.add_argument(
        "--protocol",
        nargs="+",
        default=[LATEST_MODERN_VERSION],
        choices=PROTOCOLS,
        help="what the agents speak: the SDK client's default, or a handshake-era client",
    )
    parser.add_argument("--users", type=int, default=5, help="token-file users")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--write-results", action="store_true", help="record in RESULTS.md")
    args = parser.parse_args()
    reports = asyncio.run(main_async(args))
    body = "\n".join(report_lines(reports))
    samples = [e for report in reports for e in report.error_samples][:5]
    if samples:
        body += "\n\nFirst errors:\n" + "\n".join(f"- {e}" for e in samples)
    print(body)
    if args.write_results:
        from harness import write_section

        write_section("load-http", "Load over HTTP (stateless servers, Redis + PostgreSQL)", body)
    references = [ref for r in reports for ref in (r.floor, r.bare_sdk) if ref is not None]
    if any(r.lost or r.mismatched_sessions or r.errors for r in reports) or any(
        ref.errors for ref in references
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
