"""search-by-symbol and search-by-coin: quotes, and tracking into a session on request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from fiml.market import YAHOO_CHART_URL, MarketData
from fiml.sessions.store import ALL_QUERIES, SessionStore
from tests.mcp.conftest import Connect, fails, new_session, ok, snapshot

FIXTURES = Path(__file__).parents[1] / "market" / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def live() -> AsyncIterator[MarketData]:
    """Real providers; every request goes to respx, never the network."""
    async with MarketData.live(timeout=2) as market_data:
        yield market_data


@pytest.fixture
def http_mock() -> Any:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


async def test_untracked_search_returns_a_labelled_quote(connect: Connect) -> None:
    async with connect("alice") as alice:
        result = await ok(alice, "search-by-symbol", symbol="aapl")

    assert result["tracked"] is False
    assert "session" not in result  # null fields are left out of a search's reply
    assert result["cache_hit"] is False
    assert result["quote"]["symbol"] == "AAPL"
    assert result["quote"]["synthetic"] is True


async def test_tracked_search_records_the_query_and_returns_the_context(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL", "MSFT")
        await ok(alice, "update-session-context", session_id=sid, context={"goal": "compare"})
        first = await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        second = await ok(
            alice, "search-by-symbol", symbol="AAPL", market="NE", session_id=sid, context="recent"
        )

    assert first["tracked"] is True
    assert first["session"] == {
        "total_queries": 1,
        "assets": ["AAPL", "MSFT"],
        "context_keys": ["goal"],
    }
    context = second["session"]
    assert context["assets"] == ["AAPL", "MSFT"]
    assert context["total_queries"] == 2
    assert context["context"] == {"goal": "compare"}
    earlier, latest = context["recent_queries"]
    assert earlier["parameters"] == {"symbol": "AAPL"}
    assert latest["parameters"] == {"symbol": "AAPL", "market": "NE"}
    assert latest["query_type"] == "search_by_symbol"
    assert latest["result_summary"].startswith("AAPL.NE: ") or latest["result_summary"]
    stored = await session_store.get_session(sid, history_limit=ALL_QUERIES)
    assert stored is not None
    assert [q.parameters for q in stored.state.history.queries] == [
        q["parameters"] for q in context["recent_queries"]
    ]


async def test_a_repeat_search_is_tracked_as_a_cache_hit(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "BTC", session_type="crypto")
        miss = await ok(alice, "search-by-coin", symbol="BTC", pair="EUR", session_id=sid)
        hit = await ok(alice, "search-by-coin", symbol="btc/eur", session_id=sid)

    assert (miss["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["quote"]["currency"] == "EUR"
    stored = await session_store.get_session(sid)
    assert stored is not None
    history = stored.state.history
    assert [q.cache_hit for q in history.queries] == [False, True]
    assert [q.parameters for q in history.queries] == [
        {"symbol": "BTC", "pair": "EUR"},
        {"symbol": "btc/eur"},
    ]
    assert history.query_type_counts == {"search_by_coin": 2}


async def test_context_recent_holds_the_latest_queries_asked_for(connect: Connect) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        for n in range(12):
            brief = await ok(alice, "search-by-symbol", symbol=f"T{n}", session_id=sid)
        default = await ok(
            alice, "search-by-symbol", symbol="T12", session_id=sid, context="recent"
        )
        ten = await ok(
            alice,
            "search-by-symbol",
            symbol="T13",
            session_id=sid,
            context="recent",
            recent_queries=10,
        )
        bare = await ok(alice, "search-by-symbol", symbol="T14", session_id=sid, context="none")

    assert brief["session"] == {"total_queries": 12, "assets": ["AAPL"]}
    assert [q["parameters"]["symbol"] for q in default["session"]["recent_queries"]] == [
        f"T{n}" for n in range(8, 13)
    ]
    assert [q["parameters"]["symbol"] for q in ten["session"]["recent_queries"]] == [
        f"T{n}" for n in range(4, 14)
    ]
    assert bare["session"] == {"total_queries": 15}


async def test_an_unknown_symbol_is_an_error_and_tracks_nothing(
    connect: Connect, session_store: SessionStore, live: MarketData, http_mock: Any
) -> None:
    http_mock.get(YAHOO_CHART_URL + "NOPE").respond(404, json=fixture("yahoo_chart_not_found.json"))
    async with connect("alice", market_data=live) as alice:
        sid = await new_session(alice, "NOPE")
        before = await snapshot(session_store, sid)

        message = await fails(alice, "search-by-symbol", symbol="NOPE", session_id=sid)

    assert "symbol 'NOPE' not found" in message
    assert await snapshot(session_store, sid) == before


async def test_an_unreachable_provider_is_an_error_and_tracks_nothing(
    connect: Connect, session_store: SessionStore, live: MarketData, http_mock: Any
) -> None:
    http_mock.get(YAHOO_CHART_URL + "AAPL").mock(side_effect=httpx.ConnectError("refused"))
    async with connect("alice", market_data=live) as alice:
        sid = await new_session(alice, "AAPL")
        before = await snapshot(session_store, sid)

        message = await fails(alice, "search-by-symbol", symbol="AAPL", session_id=sid)

    assert "unavailable" in message and "yahoo" in message.lower()
    assert await snapshot(session_store, sid) == before


async def test_a_malformed_symbol_is_an_error_and_tracks_nothing(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)
        before = await snapshot(session_store, sid)

        message = await fails(alice, "search-by-symbol", symbol="A A P L!", session_id=sid)

    assert "invalid symbol" in message
    assert await snapshot(session_store, sid) == before


async def test_a_session_that_cannot_record_is_refused_before_the_provider_is_asked(
    connect: Connect, session_store: SessionStore, live: MarketData, http_mock: Any
) -> None:
    route = http_mock.get(YAHOO_CHART_URL + "AAPL").respond(200, json={})
    async with connect("alice", market_data=live) as alice:
        sid = await new_session(alice)
        await ok(alice, "close-analysis-session", session_id=sid)

        message = await fails(alice, "search-by-symbol", symbol="AAPL", session_id=sid)

    assert message.endswith(f"session {sid} is closed and is read-only")
    assert route.call_count == 0


async def test_a_retried_request_id_is_recorded_once(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        other = await new_session(alice, "AAPL")
        first = await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid, request_id="r1")
        retry = await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid, request_id="r1")
        fresh = await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid, request_id="r2")
        elsewhere = await ok(
            alice, "search-by-coin", symbol="BTC", session_id=other, request_id="r1"
        )

    repeated = [r.get("repeated", False) for r in (first, retry, fresh, elsewhere)]
    assert repeated == [False, True, False, False]  # a request id is per session
    assert retry["quote"]["symbol"] == "AAPL" and retry["tracked"] is True
    assert retry["session"]["total_queries"] == 1
    assert fresh["session"]["total_queries"] == 2
    stored = await session_store.get_session(sid, history_limit=ALL_QUERIES)
    assert stored is not None
    assert stored.state.history.total_queries == 2


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"request_id": ""}, "request_id"),
        ({"request_id": "x" * 129}, "request_id"),
        ({"request_id": "line\nbreak"}, "request_id"),
        ({"request_id": "r1", "session_id": None}, "needs a session_id"),
    ],
)
async def test_a_bad_request_id_is_refused_and_records_nothing(
    connect: Connect, session_store: SessionStore, arguments: dict[str, Any], expected: str
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)
        before = await snapshot(session_store, sid)
        call = {"symbol": "AAPL", "session_id": sid, **arguments}
        if call["session_id"] is None:
            del call["session_id"]
        message = await fails(alice, "search-by-symbol", **call)

    assert expected in message
    assert await snapshot(session_store, sid) == before


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"context": "all"}, "context"),
        ({"context": "brief", "recent_queries": 3}, "recent_queries"),
        ({"context": "recent", "recent_queries": 0}, "recent_queries"),
        ({"context": "recent", "recent_queries": 21}, "recent_queries"),
        ({"context": "recent", "untracked": True}, "context"),
        ({"recent_queries": 2, "untracked": True}, "recent_queries"),
    ],
)
async def test_a_bad_context_is_refused_and_tracks_nothing(
    connect: Connect, session_store: SessionStore, arguments: dict[str, Any], field: str
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        before = await snapshot(session_store, sid)
        given = {k: v for k, v in arguments.items() if k != "untracked"}
        if "untracked" not in arguments:
            given["session_id"] = sid

        message = await fails(alice, "search-by-symbol", symbol="AAPL", **given)

    assert f"invalid {field}" in message
    assert await snapshot(session_store, sid) == before
