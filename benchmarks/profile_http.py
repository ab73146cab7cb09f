"""Where a tracked search's server CPU goes over HTTP, layer by layer, in one process.

    python benchmarks/profile_http.py                       # Redis + PostgreSQL, and SQLite
    python benchmarks/profile_http.py --rounds 15 --calls 200

``load_http.py`` measures the CPU of whole server processes under load; this takes the
same request apart in one process, so each layer's cost is a difference of two CPU
figures (``time.process_time``, so waiting for Redis or PostgreSQL costs nothing here,
unlike the client and server work each round trip takes). The ASGI apps are driven
directly (one ``http.request`` message in, the response messages collected): no socket,
no uvicorn, no HTTP client. The layers, each timed over ``--calls`` calls per round,
every round taking them in turn so that all share the machine's load alike (the table
gives the median round):

- the floor: ``http_floor.py``'s Starlette JSON-RPC echo;
- the bare SDK: ``http_bare_sdk.py``'s echo tools, FIML's token check;
- FIML: ``search-by-symbol`` with a ``session_id`` through the stateless JSON app
  :func:`fiml.mcp.server.serve_http` serves, with a bearer token; each of these over the
  2026-07-28 protocol (the SDK client's default) and the handshake-era one (legacy);
- FIML without HTTP: the same tool through ``MCPServer.call_tool``; the bare SDK's tool
  the same way;
- the store alone: the two round trips a tracked search makes (``get_session``, then
  ``append_query``).

Differences: the SDK's HTTP path is the bare SDK over HTTP minus the floor; what FIML adds
to it is FIML over HTTP minus the bare SDK, of which the store is the store alone and the
rest is FIML's tool code and the SDK's handling of its bigger arguments and result.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import http_bare_sdk
import http_floor
from mcp.server.mcpserver import MCPServer
from mcp_types.version import LATEST_MODERN_VERSION
from starlette.types import ASGIApp, Message

from fiml.core.config import Settings
from fiml.core.redis_client import open_redis
from fiml.market.service import MarketData
from fiml.mcp.auth import (
    BearerTokenIdentity,
    HashedTokenVerifier,
    Identity,
    IdentityResolver,
    StaticIdentity,
    TokenFile,
)
from fiml.mcp.server import MCP_PATH, build_server
from fiml.sessions.backends import build_backends
from fiml.sessions.models import QueryRecord
from fiml.sessions.store import SessionStore

USER = "profile-analyst"
LEGACY = "legacy"
Call = Callable[[], Awaitable[object]]


class AsgiClient:
    """JSON-RPC tool calls straight into an ASGI app, as uvicorn would hand them over."""

    def __init__(self, app: ASGIApp, *, token: str | None, protocol: str) -> None:
        self.app = app
        self.headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ]
        if token is not None:
            self.headers.append((b"authorization", f"Bearer {token}".encode()))
        self.protocol = protocol
        self.ids = 0

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's result; RuntimeError unless the call succeeded."""
        self.ids += 1
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        headers = list(self.headers)
        if self.protocol != LEGACY:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": self.protocol,
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            headers += [
                (b"mcp-protocol-version", self.protocol.encode()),
                (b"mcp-method", b"tools/call"),
                (b"mcp-name", tool.encode()),
            ]
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": params}
        ).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        reply = await self._post(body, headers)
        result = reply.get("result")
        if not isinstance(result, dict) or result.get("isError"):
            raise RuntimeError(f"{tool} failed: {reply}")
        return result

    async def _post(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": MCP_PATH,
            "raw_path": MCP_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        delivered = False
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()  # the client stays connected
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        reply: dict[str, Any] = json.loads(b"".join(chunks))
        return reply


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SessionStore]:
    """The store as ``fiml serve`` builds it: on the process's one Redis client, if any."""
    async with AsyncExitStack() as stack:
        redis = None
        if settings.redis_url is not None:
            redis = await stack.enter_async_context(open_redis(settings.redis_url, settings))
        backend, archive = build_backends(settings, redis=redis)
        yield await stack.enter_async_context(
            SessionStore(settings, backend=backend, archive=archive)
        )


def stateless_app(server: MCPServer) -> ASGIApp:
    """The app :func:`fiml.mcp.server.serve_http` serves with ``stateless=True``."""
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True
    )


async def layers(settings: Settings, workdir: Path, rounds: int, calls: int) -> dict[str, float]:
    """Median CPU ms per call of each layer, on the store ``settings`` name."""
    tokens = TokenFile([])
    token = tokens.add_token(USER)
    tokens.save(workdir / "tokens.json")
    async with open_store(settings) as store, MarketData.offline() as market:
        session = await store.create_session(["AAPL", "MSFT", "GOOGL"], "comparative", USER)
        sid = str(session.id)
        await store.update_state(sid, context={"thesis": "AI capex", "horizon": "1y"})
        arguments = {"symbol": "AAPL", "session_id": sid}

        def fiml(identity: IdentityResolver, verifier: HashedTokenVerifier | None) -> MCPServer:
            return build_server(
                store=store, market=market, identity=identity, token_verifier=verifier
            )

        over_http = fiml(BearerTokenIdentity(), HashedTokenVerifier(tokens))
        in_process = fiml(StaticIdentity(Identity(USER)), None)
        bare = http_bare_sdk.bare_server(workdir / "tokens.json", "http://127.0.0.1:8000")
        fiml_app, bare_app = stateless_app(over_http), stateless_app(bare)
        floor = AsgiClient(http_floor.app(), token=None, protocol=LEGACY)

        def record() -> QueryRecord:
            return QueryRecord(
                query_type="search_by_symbol",
                parameters={"symbol": "AAPL"},
                result_summary="AAPL: $187.44 (+1.20%) [synthetic]",
                execution_time_ms=0.01,
                cache_hit=True,
            )

        async def store_alone() -> None:
            await store.get_session(sid, history_limit=0)
            await store.append_query(sid, record())

        operations: dict[str, Call] = {
            "floor (Starlette echo)": lambda: floor.call("echo", arguments),
            "store alone (get_session + append_query)": store_alone,
            "bare SDK, call_tool": lambda: bare.call_tool("search-by-symbol", arguments),
            "FIML tracked, call_tool": lambda: in_process.call_tool("search-by-symbol", arguments),
        }
        for protocol in (LATEST_MODERN_VERSION, LEGACY):
            bare_client = AsgiClient(bare_app, token=token, protocol=protocol)
            fiml_client = AsgiClient(fiml_app, token=token, protocol=protocol)
            operations[f"bare SDK, HTTP {protocol}"] = calling(
                bare_client, "search-by-symbol", arguments
            )
            operations[f"FIML untracked, HTTP {protocol}"] = calling(
                fiml_client, "search-by-symbol", {"symbol": "AAPL"}
            )
            operations[f"FIML tracked, HTTP {protocol}"] = calling(
                fiml_client, "search-by-symbol", arguments
            )
        async with over_http.session_manager.run(), bare.session_manager.run():
            for operation in operations.values():
                for _ in range(20):
                    await operation()
            samples: dict[str, list[float]] = {name: [] for name in operations}
            for _ in range(rounds):
                for name, operation in operations.items():
                    started = time.process_time()
                    for _ in range(calls):
                        await operation()
                    samples[name].append((time.process_time() - started) * 1000 / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


def calling(client: AsgiClient, tool: str, arguments: dict[str, Any]) -> Call:
    """A call of ``tool`` through ``client``, as a function of no arguments."""
    return lambda: client.call(tool, arguments)


def report(name: str, figures: dict[str, float]) -> list[str]:
    """A Markdown table of ``figures`` and the differences that attribute them."""
    lines = [f"**{name}** (CPU ms per call, median round)", "", "| layer | ms |", "|---|---|"]
    lines += [f"| {layer} | {ms:.3f} |" for layer, ms in figures.items()]
    floor = figures["floor (Starlette echo)"]
    store = figures["store alone (get_session + append_query)"]
    lines += ["", "| attributed | ms |", "|---|---|"]
    for protocol in (LATEST_MODERN_VERSION, LEGACY):
        bare = figures[f"bare SDK, HTTP {protocol}"]
        tracked = figures[f"FIML tracked, HTTP {protocol}"]
        lines += [
            f"| {protocol}: SDK's HTTP path (bare SDK - floor) | {bare - floor:.3f} |",
            f"| {protocol}: FIML beyond the bare SDK (tracked - bare SDK) | {tracked - bare:.3f} |",
            f"| {protocol}: of which not the store (tracked - bare SDK - store) "
            f"| {tracked - bare - store:.3f} |",
        ]
    tool = figures["FIML tracked, call_tool"] - figures["bare SDK, call_tool"] - store
    lines.append(f"| FIML's tool code, no HTTP (call_tool: tracked - bare - store) | {tool:.3f} |")
    return lines


async def main_async(args: argparse.Namespace) -> None:
    logging.getLogger("mcp").setLevel(logging.WARNING)  # the SDK's per-request INFO lines
    stores = {
        "Redis + PostgreSQL": Settings(
            database_url=args.database_url,
            redis_url=args.redis_url,
            market_provider="offline",
            session_max_queries_per_session=10_000_000,
        ),
    }
    with tempfile.TemporaryDirectory(prefix="fiml-profile-") as tmp:
        if not args.redis_only:
            stores["SQLite"] = Settings(
                database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'profile.db'}",
                redis_url=None,
                market_provider="offline",
                session_max_queries_per_session=10_000_000,
            )
        for name, settings in stores.items():
            figures = await layers(settings, Path(tmp), args.rounds, args.calls)
            print("\n".join(report(name, figures)) + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=100, help="calls per layer and round")
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_load"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--redis-only", action="store_true", help="skip the SQLite store")
    args = parser.parse_args()
    uvloop = importlib.util.find_spec("uvloop") is not None
    anyio.run(main_async, args, backend_options={"use_uvloop": uvloop})


if __name__ == "__main__":
    main()
