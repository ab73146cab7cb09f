"""Fixtures for the MCP server: a SQLite store in tmp_path, offline quotes, in-memory clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from fiml.core.config import Settings
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.sessions.store import ALL_QUERIES, SessionStore
from tests.conftest import migrated_sqlite_url

Connect = Callable[..., AbstractAsyncContextManager[Client]]

TINY_TTL_HOURS = 1e-9
"""3.6 microseconds: a session created with it has expired by the next call."""

# Every tool that takes a session id, with the other arguments it needs.
SESSION_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get-session-info", {}),
    ("extend-session", {"hours": 1}),
    ("close-analysis-session", {}),
    ("get-session-history", {}),
    ("update-session-context", {"context": {"k": "v"}}),
    ("search-by-symbol", {"symbol": "AAPL"}),
    ("search-by-coin", {"symbol": "BTC"}),
]
WRITES = [c for c in SESSION_CALLS if c[0] not in {"get-session-info", "get-session-history"}]
CALL_IDS = [name for name, _ in SESSION_CALLS]
WRITE_IDS = [name for name, _ in WRITES]


async def snapshot(store: SessionStore, session_id: str) -> dict[str, Any]:
    """Everything stored about a session, to compare before and after a refused call."""
    session = await store.get_session(session_id, history_limit=ALL_QUERIES)
    assert session is not None
    return session.to_dict()


@pytest.fixture
def mcp_settings(tmp_path: Path) -> Settings:
    """Settings for an embedded store in ``tmp_path`` (already at the newest schema) and
    offline quotes."""
    url = migrated_sqlite_url(tmp_path)
    return Settings(database_url=url, redis_url=None, market_provider="offline")


@pytest.fixture
async def session_store(mcp_settings: Settings) -> AsyncIterator[SessionStore]:
    """An initialized SQLite store, shared by every client a test connects."""
    async with SessionStore(mcp_settings) as store:
        yield store


@pytest.fixture
async def market() -> AsyncIterator[MarketData]:
    """Synthetic quotes, no network."""
    async with MarketData.offline() as market_data:
        yield market_data


@pytest.fixture
def connect(session_store: SessionStore, market: MarketData) -> Connect:
    """``connect("alice")``: an in-memory client of a server that sees the caller as alice.

    Every server shares the store and the market, as processes behind a load balancer do.
    """

    def open_client(
        user: str = "alice", *, role: str = "user", market_data: MarketData | None = None
    ) -> AbstractAsyncContextManager[Client]:
        identity = StaticIdentity(Identity(user, "admin" if role == "admin" else "user"))
        server = build_server(store=session_store, market=market_data or market, identity=identity)
        return Client(server)

    return open_client


def error_text(result: CallToolResult) -> str:
    """The message of an ``isError`` result (fails the test if the call succeeded)."""
    assert result.is_error, f"expected an error, got {result.structured_content}"
    assert result.structured_content is None
    [block] = result.content
    assert isinstance(block, TextContent)
    assert "Traceback" not in block.text
    return block.text


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structuredContent."""
    result = await client.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def fails(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; its error message."""
    result = await client.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    return error_text(result)


async def new_session(client: Client, *assets: str, **extra: Any) -> str:
    """Create a session through the tool and return its id."""
    created = await ok(
        client,
        "create-analysis-session",
        assets=list(assets or ("AAPL", "MSFT")),
        session_type=extra.pop("session_type", "comparative"),
        **extra,
    )
    return str(created["session_id"])
