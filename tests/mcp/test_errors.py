"""Bad input gets an isError result naming the problem, never a traceback, and changes nothing."""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

import pytest

from fiml.market import MarketData, MemoryQuoteCache, OfflineProvider, Quote
from fiml.sessions.store import SessionStore
from tests.mcp.conftest import (
    CALL_IDS,
    SESSION_CALLS,
    TINY_TTL_HOURS,
    WRITE_IDS,
    WRITES,
    Connect,
    fails,
    new_session,
    ok,
    snapshot,
)


async def count_sessions(store: SessionStore, user: str) -> int:
    page = await store.list_user_sessions_page(user, include_archived=True, limit=1000)
    return len(page.sessions)


@pytest.mark.parametrize(("tool", "arguments"), SESSION_CALLS, ids=CALL_IDS)
async def test_an_unknown_session_is_not_found(
    connect: Connect, tool: str, arguments: dict[str, Any]
) -> None:
    missing = str(uuid4())
    async with connect("alice") as alice:
        message = await fails(alice, tool, session_id=missing, **arguments)

    assert message.endswith(f"session {missing} not found")


@pytest.mark.parametrize(("tool", "arguments"), SESSION_CALLS, ids=CALL_IDS)
async def test_a_malformed_session_id_is_named(
    connect: Connect, tool: str, arguments: dict[str, Any]
) -> None:
    async with connect("alice") as alice:
        message = await fails(alice, tool, session_id="not-a-uuid", **arguments)

    assert message.endswith("invalid session_id 'not-a-uuid': not a valid UUID")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"session_type": "bonds"}, "invalid session_type 'bonds': must be one of equity"),
        ({"ttl_hours": 0}, "invalid ttl_hours 0"),
        ({"ttl_hours": -3}, "invalid ttl_hours -3"),
        ({"ttl_hours": 169}, "at most 168 hours"),
        ({"assets": []}, "invalid assets []"),
        ({"assets": ["A" * 65]}, "invalid assets"),
        ({"tags": ["x"] * 21}, "invalid tags"),
    ],
    ids=["type", "zero-ttl", "negative-ttl", "ttl-over-max", "no-assets", "long-asset", "tags"],
)
async def test_create_refuses_bad_input_and_creates_nothing(
    connect: Connect, session_store: SessionStore, arguments: dict[str, Any], expected: str
) -> None:
    call = {"assets": ["AAPL"], "session_type": "equity", **arguments}
    async with connect("alice") as alice:
        message = await fails(alice, "create-analysis-session", **call)

    assert expected in message
    assert await count_sessions(session_store, "alice") == 0


async def test_arguments_of_the_wrong_type_are_refused(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        message = await fails(
            alice, "create-analysis-session", assets="AAPL", session_type="equity"
        )

    assert "assets" in message
    assert await count_sessions(session_store, "alice") == 0


@pytest.mark.parametrize(("tool", "arguments"), WRITES, ids=WRITE_IDS)
async def test_an_expired_session_refuses_writes_and_stays_unchanged(
    connect: Connect, session_store: SessionStore, tool: str, arguments: dict[str, Any]
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, ttl_hours=TINY_TTL_HOURS)
        before = await snapshot(session_store, sid)

        message = await fails(alice, tool, session_id=sid, **arguments)
        info = await ok(alice, "get-session-info", session_id=sid)

    assert message.endswith(f"session {sid} has expired and is read-only")
    assert info["session"]["status"] == "expired"
    assert await snapshot(session_store, sid) == before


@pytest.mark.parametrize(("tool", "arguments"), WRITES, ids=WRITE_IDS)
async def test_an_archived_session_refuses_writes_and_stays_unchanged(
    connect: Connect, session_store: SessionStore, tool: str, arguments: dict[str, Any]
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        await session_store.archive_session(sid)
        before = await snapshot(session_store, sid)

        message = await fails(alice, tool, session_id=sid, **arguments)
        info = await ok(alice, "get-session-info", session_id=sid)

    assert message.endswith(f"session {sid} is archived and is read-only")
    assert info["session"]["status"] == "archived"
    assert info["stats"]["total_queries"] == 1
    assert await snapshot(session_store, sid) == before


@pytest.mark.parametrize(("tool", "arguments"), WRITES, ids=WRITE_IDS)
async def test_a_closed_session_refuses_writes_and_stays_unchanged(
    connect: Connect, session_store: SessionStore, tool: str, arguments: dict[str, Any]
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)
        await ok(alice, "close-analysis-session", session_id=sid)
        before = await snapshot(session_store, sid)

        message = await fails(alice, tool, session_id=sid, **arguments)

    assert message.endswith(f"session {sid} is closed and is read-only")
    assert await snapshot(session_store, sid) == before


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("extend-session", {"hours": 0}, "invalid hours 0"),
        ("extend-session", {"hours": 200}, "invalid hours 200"),
        ("get-session-history", {"limit": 0}, "invalid limit 0"),
        ("get-session-history", {"offset": -1}, "invalid offset -1"),
        ("update-session-context", {}, "nothing to update"),
        ("update-session-context", {"context": {"": 1}}, "invalid context key: must be"),
    ],
    ids=["zero-hours", "past-max-ttl", "limit", "offset", "empty-update", "empty-key"],
)
async def test_out_of_range_arguments_are_named_and_change_nothing(
    connect: Connect,
    session_store: SessionStore,
    tool: str,
    arguments: dict[str, Any],
    expected: str,
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)
        before = await snapshot(session_store, sid)

        message = await fails(alice, tool, session_id=sid, **arguments)

    assert expected in message
    assert await snapshot(session_store, sid) == before


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"days": 0}, "invalid days 0"),
        ({"days": 100_000}, "invalid days 100000"),
        ({"session_type": "bonds"}, "invalid session_type 'bonds'"),
    ],
    ids=["zero-days", "too-many-days", "type"],
)
async def test_analytics_name_a_bad_window_or_type(
    connect: Connect, arguments: dict[str, Any], expected: str
) -> None:
    async with connect("alice") as alice:
        message = await fails(alice, "get-session-analytics", **arguments)

    assert expected in message


async def test_a_cursor_not_made_by_the_server_is_refused(connect: Connect) -> None:
    async with connect("alice") as alice:
        message = await fails(alice, "list-sessions", cursor="forged")

    assert "invalid cursor 'forged'" in message


async def test_an_oversized_context_value_is_refused_without_echoing_it(
    connect: Connect, session_store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-" + "x" * 70_000
    caplog.set_level(logging.DEBUG)
    async with connect("alice") as alice:
        sid = await new_session(alice)
        before = await snapshot(session_store, sid)

        message = await fails(
            alice, "update-session-context", session_id=sid, context={"notes": secret}
        )

    assert "invalid context['notes']" in message and "above the 65536 limit" in message
    assert "s3cr3t" not in message
    assert "s3cr3t" not in caplog.text
    assert await snapshot(session_store, sid) == before


class BrokenProvider(OfflineProvider):
    """A provider with a bug: its exception text must not reach the client or the log."""

    async def get_quote(self, symbol: str, *, market: str | None = None) -> Quote:
        raise RuntimeError(f"leaked detail about {symbol}")


async def test_an_unexpected_failure_is_a_generic_error_logged_without_its_text(
    connect: Connect, session_store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = MarketData(BrokenProvider("equity"), OfflineProvider("crypto"), MemoryQuoteCache(60))
    caplog.set_level(logging.DEBUG)
    async with connect("alice", market_data=broken) as alice:
        sid = await new_session(alice)
        before = await snapshot(session_store, sid)

        message = await fails(alice, "search-by-symbol", symbol="AAPL", session_id=sid)

    assert "internal error (incident " in message
    incident = message.rsplit("incident ", 1)[1].rstrip(")")
    assert "leaked detail about AAPL" not in message
    assert "leaked detail about AAPL" not in caplog.text
    logged = [r for r in caplog.records if r.name == "fiml.mcp" and r.levelno == logging.ERROR]
    assert len(logged) == 1 and incident in logged[0].getMessage()
    assert "RuntimeError" in logged[0].getMessage()
    assert await snapshot(session_store, sid) == before
