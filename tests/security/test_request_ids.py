"""A request id is bound to its call: sent again with another tool or other arguments it is
refused by name and records nothing; the same call sent again is a retry (``repeated``)."""

from __future__ import annotations

from typing import Any

import pytest

from fiml.sessions.store import ALL_QUERIES, SessionStore
from tests.mcp.conftest import Connect, fails, new_session, ok

FIRST = ("search-by-symbol", {"symbol": "AAPL"})
OTHER_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("search-by-symbol", {"symbol": "MSFT"}),
    ("search-by-symbol", {"symbol": "AAPL", "market": "US"}),
    ("search-by-coin", {"symbol": "BTC"}),
    ("search-by-coin", {"symbol": "AAPL"}),
]
OTHER_IDS = ["other-symbol", "extra-argument", "other-tool", "other-tool-same-symbol"]
DETAILS = ["brief", "none"]
"""How much each call loads: 'brief' loads the first record with the session, 'none' loads
no query, so the first record must be read back from the store."""


async def history(store: SessionStore, session_id: str) -> dict[str, Any]:
    """The session's queries as stored, with its counters."""
    session = await store.get_session(session_id, history_limit=ALL_QUERIES)
    assert session is not None
    stored = session.to_dict()["state"]["history"]
    assert isinstance(stored, dict)
    return stored


@pytest.mark.parametrize("detail", DETAILS)
@pytest.mark.parametrize(("tool", "arguments"), OTHER_CALLS, ids=OTHER_IDS)
async def test_a_request_id_reused_for_another_call_is_refused_and_records_nothing(
    connect: Connect,
    session_store: SessionStore,
    tool: str,
    arguments: dict[str, Any],
    detail: str,
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        first_tool, first_arguments = FIRST
        await ok(alice, first_tool, **first_arguments, session_id=sid, request_id="r1")
        before = await history(session_store, sid)
        message = await fails(
            alice, tool, **arguments, session_id=sid, request_id="r1", context=detail
        )
        after = await history(session_store, sid)
        again = await ok(
            alice, first_tool, **first_arguments, session_id=sid, request_id="r1", context=detail
        )

    assert "invalid request_id 'r1': already names another call" in message
    assert after == before
    assert again["repeated"] is True and again["quote"]["symbol"] == "AAPL"


@pytest.mark.parametrize("detail", DETAILS)
async def test_the_same_call_repeated_is_a_retry(
    connect: Connect, session_store: SessionStore, detail: str
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        first = await ok(alice, "search-by-coin", symbol="ETH", pair="EUR", session_id=sid)
        tracked = await ok(
            alice, "search-by-coin", symbol="BTC", pair="EUR", session_id=sid, request_id="r1"
        )
        for n in range(12):  # push the first record out of what a call loads with the session
            await ok(alice, "search-by-symbol", symbol=f"S{n}", session_id=sid)
        retry = await ok(
            alice,
            "search-by-coin",
            symbol="BTC",
            pair="EUR",
            session_id=sid,
            request_id="r1",
            context=detail,
        )

    assert "repeated" not in first and "repeated" not in tracked
    assert retry["repeated"] is True and retry["quote"]["symbol"] == tracked["quote"]["symbol"]
    assert retry["session"]["total_queries"] == 14
    assert (await history(session_store, sid))["total_queries"] == 14


async def test_another_users_request_id_never_binds_mine(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        mine = await new_session(alice, "AAPL")
        theirs = await new_session(bob, "AAPL")
        await ok(bob, "search-by-coin", symbol="BTC", session_id=theirs, request_id="r1")
        answer = await ok(
            alice, "search-by-symbol", symbol="AAPL", session_id=mine, request_id="r1"
        )

    assert "repeated" not in answer and answer["session"]["total_queries"] == 1
