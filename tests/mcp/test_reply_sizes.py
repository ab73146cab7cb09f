"""Every tool's default reply fits its size bound, however long the session's history.

Sizes are counted as :func:`fiml.mcp.replies.reply_bytes` counts them: the text block and
the structured content as the transport sends them (docs/SESSION_MANAGEMENT.md, "Tool
replies", has the bounds).
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from fiml.mcp.replies import REPLY_BUDGET_BYTES, reply_bytes, sized_reply
from fiml.mcp.session_tools import INFO_RECENT_QUERIES
from fiml.mcp.timeline_tools import DEFAULT_TIMELINE_PAGE
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.events import recorded_quote
from fiml.sessions.limits import MAX_ASSETS, MAX_STATE_KEYS
from fiml.sessions.models import utcnow
from tests.mcp.conftest import Connect, new_session

HISTORY = [1, 10, 100]

PER_QUERY_BYTES = 700
"""What one full query view may take in a reply, text and structure together."""
PER_EVENT_BYTES = 1_300
"""What one query's timeline event, with its recorded quote, may take in a reply."""
BOUNDS: dict[str, int] = {
    "create-analysis-session": 1_000,
    "extend-session": 1_000,
    "close-analysis-session": 1_000,
    "update-session-context": 400,
    "get-session-analytics": 1_200,
    "list-sessions": 100 + 600 * 20,
    "search-sessions": 100 + 600 * 20,
    "get-session-history": 200 + PER_QUERY_BYTES * 50,
    "get-session-info": 2_000 + PER_QUERY_BYTES * INFO_RECENT_QUERIES,
    "get-session-timeline": 200 + PER_EVENT_BYTES * DEFAULT_TIMELINE_PAGE,
    "fork-session": 1_200,
}
"""Every other tool's bound: fixed, or by the default page (20 sessions, 50 queries) and the
latest queries get-session-info sends by default."""


async def _seed(store: SessionStore, session_id: str, queries: int) -> None:
    """``queries`` records like the search tools write."""
    for n in range(queries):
        symbol = ("AAPL", "MSFT", "GOOGL")[n % 3]
        await store.append_query(
            session_id,
            QueryRecord(
                query_type="search_by_symbol",
                parameters={"symbol": symbol},
                result_summary=f"{symbol}: $123.45 (+1.23%) [synthetic]",
                execution_time_ms=0.123456789,
                cache_hit=n % 2 == 1,
            ),
            quote=recorded_quote(
                provider="offline",
                quote_timestamp=utcnow(),
                fetched_at=utcnow(),
                cached=n % 2 == 1,
                figures={
                    "symbol": symbol,
                    "name": f"{symbol} Corporation Common Stock",
                    "asset_class": "equity",
                    "price": 123.456789,
                    "currency": "USD",
                    "change": -1.234567,
                    "change_percent": -0.987654,
                    "volume": 12345678.0,
                    "market": "NASDAQ",
                    "synthetic": True,
                },
            ),
        )


async def _reply(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    [block] = result.content
    assert isinstance(block, TextContent)
    assert "\n" not in block.text  # compact JSON
    return result


@pytest.mark.parametrize("queries", HISTORY)
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("search-by-symbol", {"symbol": "AAPL"}), ("search-by-coin", {"symbol": "BTC"})],
)
async def test_a_tracked_search_fits_the_budget_at_any_history(
    connect: Connect,
    session_store: SessionStore,
    tool: str,
    arguments: dict[str, Any],
    queries: int,
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL", "MSFT", "BTC")
        await _reply(alice, "update-session-context", {"session_id": sid, "context": {"goal": 1}})
        await _seed(session_store, sid, queries - 1)

        result = await _reply(alice, tool, {**arguments, "session_id": sid})

    assert reply_bytes(result) <= REPLY_BUDGET_BYTES
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["session"] == {
        "total_queries": queries,
        "assets": ["AAPL", "MSFT", "BTC"],
        "context_keys": ["goal"],
    }


async def test_a_session_of_many_long_labels_still_fits_the_budget(
    connect: Connect, session_store: SessionStore
) -> None:
    assets = [f"A{n:02d}".ljust(20, "X") for n in range(MAX_ASSETS)]
    context = {f"key-{n:03d}".ljust(100, "k"): n for n in range(MAX_STATE_KEYS)}
    async with connect("alice") as alice:
        sid = await new_session(alice, *assets)
        await _reply(alice, "update-session-context", {"session_id": sid, "context": context})

        result = await _reply(alice, "search-by-symbol", {"symbol": "AAPL", "session_id": sid})

    assert reply_bytes(result) <= REPLY_BUDGET_BYTES
    assert isinstance(result.structured_content, dict)
    session = result.structured_content["session"]
    assert session["total_queries"] == 1
    assert session["assets"] == assets[: len(session["assets"])]  # the first ones, in order


async def test_an_untracked_search_fits_the_budget(connect: Connect) -> None:
    async with connect("alice") as alice:
        result = await _reply(alice, "search-by-coin", {"symbol": "BTC"})

    assert reply_bytes(result) <= REPLY_BUDGET_BYTES


@pytest.mark.parametrize("queries", HISTORY)
@pytest.mark.parametrize("tool", sorted(BOUNDS))
async def test_every_other_tool_fits_its_bound(
    connect: Connect, session_store: SessionStore, tool: str, queries: int
) -> None:
    arguments: dict[str, dict[str, Any]] = {
        "create-analysis-session": {"assets": ["AAPL"], "session_type": "equity"},
        "extend-session": {"hours": 1},
        "update-session-context": {"context": {"goal": "compare"}},
        "get-session-analytics": {},
        "list-sessions": {},
        "search-sessions": {"asset": "AAPL"},
    }
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL", "MSFT", "BTC", tags=["bench"])
        await _seed(session_store, sid, queries)
        given = arguments.get(tool, {})
        if tool not in {
            "create-analysis-session",
            "get-session-analytics",
            "list-sessions",
            "search-sessions",
        }:
            given = {**given, "session_id": sid}

        result = await _reply(alice, tool, given)

    assert reply_bytes(result) <= BOUNDS[tool]


class _Labelled(BaseModel):
    label: str
    values: dict[str, float | None]


@pytest.mark.parametrize(
    "label",
    ["plain", 'a "quoted" \\ back\\slash', "tab\tnew\nline\u0001", "é 中 \u2028 😀", ""],
)
@pytest.mark.parametrize("omit_null", [False, True])
def test_the_size_a_reply_is_built_with_is_the_size_it_is_sent_with(
    label: str, omit_null: bool
) -> None:
    result = _Labelled(label=label, values={label: 1.5, "none": None})

    sent, size = sized_reply(result, omit_null=omit_null)

    assert size == reply_bytes(sent)
