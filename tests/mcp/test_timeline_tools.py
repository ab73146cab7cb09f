"""The timeline tools through the SDK's in-memory client: replay and fork, for the caller
only; another user's session is answered exactly like an unknown one."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from fiml.sessions.events import MAX_RECORDED_QUOTE_BYTES
from fiml.sessions.store import SessionStore
from tests.mcp.conftest import Connect, fails, new_session, ok, snapshot


async def _record(connect: Connect) -> str:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL", "MSFT")
        await ok(alice, "update-session-context", session_id=sid, context={"focus": "margins"})
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        await ok(alice, "update-session-context", session_id=sid, preferences={"ccy": "EUR"})
        await ok(alice, "search-by-symbol", symbol="MSFT", session_id=sid)
    return sid


async def test_the_timeline_replays_what_each_search_answered(
    connect: Connect, session_store: SessionStore
) -> None:
    sid = await _record(connect)
    async with connect("alice") as alice:
        history = await ok(alice, "get-session-history", session_id=sid)
        first = await ok(alice, "get-session-timeline", session_id=sid, limit=3)
        rest = await ok(alice, "get-session-timeline", session_id=sid, cursor=first["next_cursor"])
    events = first["events"] + rest["events"]
    assert rest.get("next_cursor") is None
    assert [e["kind"] for e in events] == ["context", "query", "preferences", "query"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    for event, query in zip(
        (e for e in events if e["kind"] == "query"), history["queries"], strict=True
    ):
        quote = event["data"]["quote"]
        assert event["data"]["query_id"] == query["id"]
        assert quote["provider"] == "offline" and quote["cached"] is query["cache_hit"]
        assert quote["figures"]["symbol"] == query["parameters"]["symbol"]
        assert isinstance(quote["figures"]["price"], float)
        assert datetime.fromisoformat(quote["quote_timestamp"]).tzinfo is not None
        assert datetime.fromisoformat(quote["fetched_at"]).tzinfo is not None
        assert len(str(quote)) < 2 * MAX_RECORDED_QUOTE_BYTES
    assert events[0]["data"] == {"set": {"focus": "margins"}, "removed": []}

    await session_store.archive_session(sid)
    async with connect("alice") as alice:
        after = await ok(alice, "get-session-timeline", session_id=sid, limit=100)
    assert after["events"] == events


async def test_fork_after_a_query_and_at_a_time(
    connect: Connect, session_store: SessionStore
) -> None:
    sid = await _record(connect)
    async with connect("alice") as alice:
        timeline = await ok(alice, "get-session-timeline", session_id=sid)
        fork = await ok(alice, "fork-session", session_id=sid, after_queries=1)
        at = timeline["events"][2]["at"]
        timed = await ok(alice, "fork-session", session_id=sid, at=at)
        info = await ok(alice, "get-session-info", session_id=fork["session_id"])
    assert fork["forked_from"] == sid and fork["session_id"] != sid
    assert fork["total_queries"] == 1 and fork["assets"] == ["AAPL", "MSFT"]
    assert info["context"] == {"focus": "margins"}
    stored = await session_store.get_session(timed["session_id"])
    assert stored is not None and stored.user_id == "alice"
    assert stored.state.preferences == {"ccy": "EUR"}
    assert stored.state.history.total_queries == 1
    assert stored.state.metadata["forked_from"]["session_id"] == sid


async def test_bad_fork_arguments_are_typed_errors_naming_the_field(
    connect: Connect, session_store: SessionStore
) -> None:
    sid = await _record(connect)
    before = await session_store.list_user_sessions("alice")
    async with connect("alice") as alice:
        for arguments, field in (
            ({"after_queries": 3}, "after_queries"),
            ({"after_queries": -1}, "after_queries"),
            ({"at": "yesterday"}, "at"),
            ({"at": "2026-12-01T10:00:00"}, "at"),  # no time zone
            ({"at": "2000-01-01T00:00:00Z"}, "at"),  # before the session began
            ({"after_queries": 1, "at": "2026-12-01T10:00:00Z"}, "at"),
        ):
            message = await fails(alice, "fork-session", session_id=sid, **arguments)
            assert field in message, (arguments, message)
        assert "cursor" in await fails(alice, "get-session-timeline", session_id=sid, cursor="x")
    assert await session_store.list_user_sessions("alice") == before


async def test_another_users_session_is_not_found_like_an_unknown_one(
    connect: Connect, session_store: SessionStore
) -> None:
    sid = await _record(connect)
    kept = await snapshot(session_store, sid)
    unknown = str(uuid4())
    async with connect("bob") as bob:
        for tool in ("get-session-timeline", "fork-session"):
            foreign = await fails(bob, tool, session_id=sid)
            missing = await fails(bob, tool, session_id=unknown)
            assert foreign.replace(sid, unknown) == missing
            assert "not found" in foreign.lower()
    assert await snapshot(session_store, sid) == kept
    assert await session_store.list_user_sessions("bob") == []


async def test_a_reader_of_a_shared_session_replays_and_forks_it_until_unshared(
    connect: Connect, session_store: SessionStore
) -> None:
    sid = await _record(connect)
    async with connect("alice") as alice, connect("bob") as bob:
        await ok(alice, "share-session", session_id=sid, user_id="bob")
        mine = await ok(alice, "get-session-timeline", session_id=sid)
        assert await ok(bob, "get-session-timeline", session_id=sid) == mine
        fork = await ok(bob, "fork-session", session_id=sid, after_queries=2)
        await ok(alice, "unshare-session", session_id=sid, user_id="bob")
        assert "not found" in await fails(bob, "get-session-timeline", session_id=sid)
        assert "not found" in await fails(bob, "fork-session", session_id=sid)
    stored = await session_store.get_session(fork["session_id"])
    assert stored is not None and stored.user_id == "bob"
    assert stored.state.history.total_queries == 2
    assert stored.state.metadata["forked_from"]["session_id"] == sid
