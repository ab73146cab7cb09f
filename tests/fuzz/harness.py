"""A served FIML for hypothesis: one event loop in a thread, reached from synchronous tests.

Hypothesis runs each example as a plain call, so the server, its store and its clients live
in an anyio blocking portal for the whole test and every example talks to them through it.
Each user gets an in-memory SDK client; the same server is also reachable as streamable
HTTP (in process, stateless, JSON responses) with a bearer token per user, for input only
raw JSON can carry.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jsonschema
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client, MCPError
from mcp.types import CallToolResult, ReadResourceResult, TextContent, Tool
from sqlalchemy.engine import make_url

from fiml.core.config import Settings
from fiml.market.service import MarketData
from fiml.mcp import (
    BearerTokenIdentity,
    HashedTokenVerifier,
    Identity,
    StaticIdentity,
    TokenFile,
    build_server,
)
from fiml.mcp.schemas import SessionInfo
from fiml.sessions.db import metadata
from fiml.sessions.store import SessionStore
from tests.conftest import sqlite_url

T = TypeVar("T")

USERS = {"alice": "user", "bob": "user", "root": "admin"}
"""Who the harness serves; alice is the fuzzing user, bob owns the foreign session."""

READ_ONLY_TOOLS = {
    "get-session-info",
    "list-sessions",
    "search-sessions",
    "get-session-history",
    "list-shared-sessions",
    "list-session-templates",
    "get-session-timeline",
}
"""Tools that must leave the store exactly as it was, even when they succeed.

``get-session-analytics`` is read-only too, but records metrics of sessions that finished
since the last cleanup, so it is left out here.
"""

TINY_TTL_HOURS = 1e-9
HTTP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "mcp-protocol-version": "2025-06-18",
}

# What must never reach a client: Python's own error output and internal names.
LEAKS = re.compile(
    r"Traceback|File \"|\bline \d+, in\b|<class '|<module|object at 0x|"
    r"\bfiml\.[a-z_]+\.|\bsqlalchemy\b|\baiosqlite\b|\basyncpg\b|internal error",
    re.IGNORECASE,
)

StoreState = dict[str, list[tuple[Any, ...]]]


def fuzz_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """An embedded store in ``tmp_path`` with offline quotes."""
    return Settings(
        database_url=sqlite_url(tmp_path), redis_url=None, market_provider="offline", **overrides
    )


def store_state(database: Path) -> StoreState:
    """Every row of every FIML table as stored, so a refused call can be shown to change nothing.

    Read with the standard library's own SQLite connection (the store runs in WAL mode, so
    this sees every committed write), which is fast enough to run around every call.
    """
    state: StoreState = {}
    with closing(sqlite3.connect(database)) as conn:
        for table in metadata.sorted_tables:
            order = ", ".join(column.name for column in table.primary_key.columns)
            rows = conn.execute(f"SELECT * FROM {table.name} ORDER BY {order}")
            state[table.name] = [tuple(row) for row in rows]
    return state


@dataclass
class Served:
    """What the portal holds: the store, a client per user, HTTP with tokens, named sessions."""

    store: SessionStore
    market: MarketData
    clients: dict[str, Client]
    http: httpx.AsyncClient
    tokens: dict[str, str]
    tools: dict[str, Tool]
    sessions: dict[str, str] = field(default_factory=dict)


async def _pool(store: SessionStore) -> dict[str, str]:
    """Sessions in every state: alice's own (active, closed, expired, archived), bob's."""
    made: dict[str, str] = {}
    for name, user, ttl in (
        ("own", "alice", None),
        ("closed", "alice", None),
        ("expired", "alice", TINY_TTL_HOURS),
        ("archived", "alice", None),
        ("foreign", "bob", None),
    ):
        session = await store.create_session(
            ["AAPL", "BTC"], "comparative", user_id=user, ttl_hours=ttl, tags=["fuzz"]
        )
        made[name] = str(session.id)
    await store.update_state(made["own"], context={"thesis": "fuzzing"})
    await store.update_state(made["foreign"], context={"thesis": "bob's own"})
    canary = await store.create_session(["AAPL"], "equity", user_id="bob")
    made["canary"] = str(canary.id)
    await store.close_session(made["closed"])
    await store.archive_session(made["archived"])
    made["unknown"] = "00000000-0000-4000-8000-000000000000"
    return made


@asynccontextmanager
async def serve(settings: Settings, *, market: MarketData | None = None) -> AsyncIterator[Served]:
    """Build the store, one server per user (in memory) and one HTTP app with tokens."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(SessionStore(settings))
        quotes = (
            market if market is not None else await stack.enter_async_context(MarketData.offline())
        )
        clients: dict[str, Client] = {}
        for user, role in USERS.items():
            identity = StaticIdentity(Identity(user, "admin" if role == "admin" else "user"))
            server = build_server(store=store, market=quotes, identity=identity)
            clients[user] = await stack.enter_async_context(Client(server))
        token_file = TokenFile([])
        tokens = {
            user: token_file.add_token(user, "admin" if role == "admin" else "user")
            for user, role in USERS.items()
        }
        http_server = build_server(
            store=store,
            market=quotes,
            identity=BearerTokenIdentity(),
            token_verifier=HashedTokenVerifier(token_file),
        )
        app = http_server.streamable_http_app(stateless_http=True, json_response=True)
        await stack.enter_async_context(http_server.session_manager.run())
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
            )
        )
        tools = {tool.name: tool for tool in (await clients["alice"].list_tools()).tools}
        served = Served(store, quotes, clients, http, tokens, tools, await _pool(store))
        yield served


class Harness:
    """Synchronous access to a :class:`Served` FIML, for hypothesis examples."""

    def __init__(self, portal: BlockingPortal, served: Served) -> None:
        self.portal = portal
        self.served = served
        self._beats = 0

    @property
    def tools(self) -> dict[str, Tool]:
        """Every tool the server lists, by name."""
        return self.served.tools

    def session(self, name: str) -> str:
        """The id of a named session of the pool (``own``, ``foreign``, ``unknown``, ...)."""
        return self.served.sessions[name]

    def new_session(self, user: str = "alice") -> str:
        """A fresh active session of ``user``."""

        async def create() -> str:
            session = await self.served.store.create_session(
                ["MSFT"], "equity", user_id=user, tags=["fresh"]
            )
            return str(session.id)

        return self.portal.call(create)

    def state(self) -> StoreState:
        """Every stored row, now."""
        database = make_url(self.served.store.settings.database_url).database
        assert database is not None
        return store_state(Path(database))

    def call(self, tool: str, arguments: Mapping[str, Any], user: str = "alice") -> CallToolResult:
        """Call ``tool`` as ``user`` through the in-memory SDK client."""
        client = self.served.clients[user]
        return self.run(client.call_tool, tool, dict(arguments))

    def read(self, uri: str, user: str = "alice") -> ReadResourceResult | MCPError:
        """Read a resource as ``user``; the MCP error if the server refused."""
        client = self.served.clients[user]

        async def read() -> ReadResourceResult | MCPError:
            try:
                return await client.read_resource(uri)
            except MCPError as exc:
                return exc

        return self.portal.call(read)

    def post(
        self, body: bytes, user: str | None = "alice", *, token: str | None = None
    ) -> httpx.Response:
        """POST a raw JSON-RPC body to the HTTP app with ``user``'s bearer token.

        ``token`` presents that string as the bearer token instead.
        """
        headers = dict(HTTP_HEADERS)
        bearer = token if token is not None else self.served.tokens[user] if user else None
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.portal.call(
            lambda: self.served.http.post("/mcp", content=body, headers=headers)
        )

    def assert_serving(self) -> None:
        """A normal write and its read-back succeed: nothing before left the server stuck."""
        self._beats += 1
        canary = {"session_id": self.session("canary"), "context": {"beat": self._beats}}
        result = self.call("update-session-context", canary, "bob")
        content = assert_valid_result(result, self.tools["update-session-context"])
        assert content["context"] == {"beat": self._beats}

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine function in the server's loop."""
        return self.portal.call(function, *args)


@contextmanager
def harness_for(settings: Settings, *, market: MarketData | None = None) -> Iterator[Harness]:
    """A :class:`Harness` serving ``settings`` until the block ends."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(settings, market=market)) as served,
    ):
        yield Harness(portal, served)


def error_message(result: CallToolResult) -> str:
    """The text of an ``isError`` result, checked to be a message meant for people."""
    assert result.is_error
    assert result.structured_content is None
    [block] = result.content
    assert isinstance(block, TextContent)
    assert_readable(block.text)
    return block.text


def assert_readable(message: str) -> None:
    """A message for an agent: no traceback, no internal names, not an unexpected failure."""
    assert message.strip(), "empty error message"
    leak = LEAKS.search(message)
    assert leak is None, f"error message leaks {leak.group(0)!r}: {message[:500]!r}"


_validators: dict[str, jsonschema.protocols.Validator] = {}


def _output_validator(tool: Tool) -> jsonschema.protocols.Validator:
    """The tool's outputSchema, checked and compiled once (``jsonschema.validate`` redoes both)."""
    schema = tool.output_schema
    assert schema is not None, f"{tool.name} has no outputSchema"
    key = json.dumps(schema, sort_keys=True)
    if key not in _validators:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _validators[key] = cls(schema)
    return _validators[key]


def assert_valid_result(result: CallToolResult, tool: Tool) -> dict[str, Any]:
    """A successful result whose structuredContent matches the tool's outputSchema."""
    assert not result.is_error
    content = result.structured_content
    assert isinstance(content, dict) and tool.output_schema is not None
    _output_validator(tool).validate(content)
    [block] = result.content
    assert isinstance(block, TextContent) and json.loads(block.text) == content
    return content


def assert_session_json(text: str, owner_sessions: set[str]) -> None:
    """A resource body: a SessionInfo of one of the caller's sessions."""
    info = SessionInfo.model_validate_json(text)
    assert str(info.session.session_id) in owner_sessions


def owned_ids(harness: Harness, user: str) -> set[str]:
    """Every session id ``user`` owns, archived ones included."""

    async def ids() -> set[str]:
        page = await harness.served.store.list_user_sessions_page(
            user, include_archived=True, limit=1000
        )
        return {str(s.id) for s in page.sessions}

    return harness.run(ids)
