"""One user can neither read, change, list, track into nor count another user's sessions."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from mcp import MCPError

from fiml.sessions.jobs import run_cleanup
from fiml.sessions.store import SessionStore
from tests.mcp.conftest import CALL_IDS, SESSION_CALLS, Connect, fails, new_session, ok, snapshot


@pytest.mark.parametrize(("tool", "arguments"), SESSION_CALLS, ids=CALL_IDS)
async def test_anothers_session_looks_exactly_like_an_unknown_one(
    connect: Connect, session_store: SessionStore, tool: str, arguments: dict[str, Any]
) -> None:
    unknown = str(uuid4())
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await new_session(alice, "AAPL")
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        before = await snapshot(session_store, sid)

        foreign = await fails(bob, tool, session_id=sid, **arguments)
        missing = await fails(bob, tool, session_id=unknown, **arguments)

    assert foreign == missing.replace(unknown, sid)
    assert foreign.endswith(f"session {sid} not found")
    assert await snapshot(session_store, sid) == before


async def test_anothers_session_resource_reads_as_not_found(connect: Connect) -> None:
    unknown = str(uuid4())
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await new_session(alice)

        with pytest.raises(MCPError) as foreign:
            await bob.read_resource(f"session://{sid}")
        with pytest.raises(MCPError) as missing:
            await bob.read_resource(f"session://{unknown}")

    assert str(foreign.value) == str(missing.value).replace(unknown, sid)
    assert f"session {sid} not found" in str(foreign.value)


async def test_listing_shows_only_the_callers_sessions(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        alices = {await new_session(alice, "AAPL"), await new_session(alice, "MSFT")}
        bobs = {await new_session(bob, "BTC", session_type="crypto")}

        seen_by_alice = await ok(alice, "list-sessions", include_archived=True)
        seen_by_bob = await ok(bob, "list-sessions", include_archived=True)

    assert {s["session_id"] for s in seen_by_alice["sessions"]} == alices
    assert {s["session_id"] for s in seen_by_bob["sessions"]} == bobs


async def test_analytics_count_only_the_callers_sessions(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        finished = await new_session(alice, "AAPL")
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=finished)
        await ok(alice, "close-analysis-session", session_id=finished)
        await new_session(alice, "MSFT")
        await run_cleanup(session_store)

        bobs = await ok(bob, "get-session-analytics")
        alices = await ok(alice, "get-session-analytics")

    assert bobs["user_id"] == "bob"
    assert (bobs["total_sessions"], bobs["active_sessions"], bobs["total_queries"]) == (0, 0, 0)
    assert bobs["top_assets"] == []
    assert (alices["total_sessions"], alices["total_queries"]) == (2, 1)


@pytest.mark.parametrize(
    "arguments", [{"user_id": "alice"}, {"all_users": True}], ids=["one-user", "all-users"]
)
async def test_a_user_may_not_ask_for_others_analytics(
    connect: Connect, arguments: dict[str, Any]
) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        await new_session(alice, "AAPL")

        message = await fails(bob, "get-session-analytics", **arguments)

    assert message.endswith("reading other users' analytics requires the 'admin' role")


async def test_a_user_may_name_themselves_in_analytics(connect: Connect) -> None:
    async with connect("bob") as bob:
        await new_session(bob, "BTC", session_type="crypto")

        stats = await ok(bob, "get-session-analytics", user_id="bob")

    assert (stats["user_id"], stats["total_sessions"]) == ("bob", 1)


async def test_an_admin_may_read_one_or_every_users_analytics(
    connect: Connect, session_store: SessionStore
) -> None:
    async with (
        connect("alice") as alice,
        connect("bob") as bob,
        connect("root", role="admin") as admin,
    ):
        for client, symbol in ((alice, "AAPL"), (bob, "BTC")):
            sid = await new_session(client, symbol)
            await ok(client, "search-by-symbol", symbol=symbol, session_id=sid)
            await ok(client, "close-analysis-session", session_id=sid)
        await run_cleanup(session_store)

        alices = await ok(admin, "get-session-analytics", user_id="alice")
        everyone = await ok(admin, "get-session-analytics", all_users=True)
        own = await ok(admin, "get-session-analytics")

    assert (alices["scope"], alices["user_id"]) == ("user", "alice")
    assert (alices["total_sessions"], alices["total_queries"]) == (1, 1)
    assert [a["asset"] for a in alices["top_assets"]] == ["AAPL"]
    assert (everyone["scope"], everyone["user_id"]) == ("all", None)
    assert (everyone["total_sessions"], everyone["total_queries"]) == (2, 2)
    assert (own["user_id"], own["total_sessions"]) == ("root", 0)


async def test_an_admin_cannot_read_another_users_session(connect: Connect) -> None:
    async with connect("alice") as alice, connect("root", role="admin") as admin:
        sid = await new_session(alice, "AAPL")

        message = await fails(admin, "get-session-info", session_id=sid)

    assert message.endswith(f"session {sid} not found")
