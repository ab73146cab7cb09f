"""The session tools through the SDK's in-memory client: shapes and behaviour."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from mcp.types import TextResourceContents

from fiml.mcp.session_tools import INFO_MAX_QUERIES, INFO_RECENT_QUERIES
from fiml.sessions.jobs import run_cleanup
from fiml.sessions.models import QueryRecord
from fiml.sessions.store import SessionStore
from tests.mcp.conftest import TINY_TTL_HOURS, Connect, fails, new_session, ok


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_create_returns_the_session_id_expiry_and_subject(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        created = await ok(
            alice,
            "create-analysis-session",
            assets=["aapl", "googl", "msft"],
            session_type="comparative",
            ttl_hours=2,
            tags=["q3", "tech"],
        )

    assert created["assets"] == ["AAPL", "GOOGL", "MSFT"]
    assert created["session_type"] == "comparative"
    assert created["status"] == "active"
    assert created["tags"] == ["q3", "tech"]
    assert at(created["expires_at"]) - at(created["created_at"]) == timedelta(hours=2)
    assert 0 < created["time_remaining_seconds"] <= 2 * 3600
    stored = await session_store.get_session(created["session_id"])
    assert stored is not None and stored.user_id == "alice"


async def test_create_uses_the_default_ttl(connect: Connect) -> None:
    async with connect("alice") as alice:
        created = await ok(alice, "create-analysis-session", assets=["BTC"], session_type="crypto")

    assert at(created["expires_at"]) - at(created["created_at"]) == timedelta(hours=24)


async def test_info_shows_details_stats_recent_queries_and_context(connect: Connect) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL", "MSFT")
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        await ok(alice, "search-by-symbol", symbol="MSFT", session_id=sid)
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        await ok(alice, "update-session-context", session_id=sid, context={"focus": "margins"})

        info = await ok(alice, "get-session-info", session_id=sid, recent_queries=3)

    assert info["session"]["session_id"] == sid
    assert info["session"]["assets"] == ["AAPL", "MSFT"]
    assert info["stats"]["total_queries"] == 3
    assert info["stats"]["cache_hits"] == 1
    assert info["stats"]["cache_hit_rate"] == pytest.approx(
        1 / 3, abs=1e-4
    )  # a rate, to 4 decimals
    assert info["stats"]["query_types"] == {"search_by_symbol": 3}
    assert [q["parameters"]["symbol"] for q in info["recent_queries"]] == ["AAPL", "MSFT", "AAPL"]
    assert [q["cache_hit"] for q in info["recent_queries"]] == [False, False, True]
    assert info["context"] == {"focus": "margins"}


async def test_info_sends_the_latest_queries_by_default_and_more_when_asked(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        for n in range(INFO_MAX_QUERIES + 5):
            await session_store.append_query(
                sid, QueryRecord(query_type="search_by_symbol", parameters={"n": n})
            )

        default = await ok(alice, "get-session-info", session_id=sid)
        none = await ok(alice, "get-session-info", session_id=sid, recent_queries=0)
        most = await ok(alice, "get-session-info", session_id=sid, recent_queries=INFO_MAX_QUERIES)

    total = INFO_MAX_QUERIES + 5
    latest = [q["parameters"]["n"] for q in default["recent_queries"]]
    assert latest == list(range(total - INFO_RECENT_QUERIES, total))  # oldest first
    assert none["recent_queries"] == []
    assert len(most["recent_queries"]) == INFO_MAX_QUERIES
    for info in (default, none, most):
        assert info["stats"]["total_queries"] == total  # the stats cover every query


@pytest.mark.parametrize("value", [-1, INFO_MAX_QUERIES + 1, 2.5, "many"])
async def test_info_refuses_a_bad_count_of_queries_naming_it(
    connect: Connect, value: object
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")

        message = await fails(alice, "get-session-info", session_id=sid, recent_queries=value)

    assert "recent_queries" in message


async def test_list_pages_through_the_callers_sessions_newest_first(connect: Connect) -> None:
    async with connect("alice") as alice:
        ids = [await new_session(alice, f"S{n}") for n in range(5)]

        first = await ok(alice, "list-sessions", limit=2)
        second = await ok(alice, "list-sessions", limit=2, cursor=first["next_cursor"])
        third = await ok(alice, "list-sessions", limit=2, cursor=second["next_cursor"])

    listed = [s["session_id"] for page in (first, second, third) for s in page["sessions"]]
    assert listed == list(reversed(ids))
    assert third["next_cursor"] is None
    assert first["sessions"][0]["assets"] == ["S4"]
    assert first["sessions"][0]["total_queries"] == 0


async def test_list_hides_archived_sessions_unless_asked(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        kept = await new_session(alice, "AAPL")
        archived = await new_session(alice, "MSFT")
        await session_store.archive_session(archived)

        default = await ok(alice, "list-sessions")
        everything = await ok(alice, "list-sessions", include_archived=True)

    assert [s["session_id"] for s in default["sessions"]] == [kept]
    assert {s["session_id"]: s["status"] for s in everything["sessions"]} == {
        kept: "active",
        archived: "archived",
    }


async def test_extend_pushes_the_expiry_back_by_the_hours_given(connect: Connect) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, ttl_hours=1)
        before = await ok(alice, "get-session-info", session_id=sid)

        extended = await ok(alice, "extend-session", session_id=sid, hours=1.5)

    old = at(before["session"]["expires_at"])
    assert at(extended["expires_at"]) - old == timedelta(hours=1.5)
    assert extended["status"] == "active"


async def test_close_marks_the_session_finished_and_read_only(connect: Connect) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)

        closed = await ok(alice, "close-analysis-session", session_id=sid)
        info = await ok(alice, "get-session-info", session_id=sid)

    assert closed["status"] == "closed"
    assert closed["closed_at"] is not None
    assert info["session"]["status"] == "closed"


async def test_history_pages_through_every_query_oldest_first(connect: Connect) -> None:
    symbols = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA"]
    async with connect("alice") as alice:
        sid = await new_session(alice, *symbols)
        for symbol in symbols:
            await ok(alice, "search-by-symbol", symbol=symbol, session_id=sid)

        first = await ok(alice, "get-session-history", session_id=sid, limit=2)
        second = await ok(alice, "get-session-history", session_id=sid, offset=2, limit=2)
        last = await ok(alice, "get-session-history", session_id=sid, offset=4, limit=2)

    pages = [first, second, last]
    seen = [q["parameters"]["symbol"] for page in pages for q in page["queries"]]
    assert seen == symbols
    assert [p["next_offset"] for p in pages] == [2, 4, None]
    assert {p["total_queries"] for p in pages} == {5}
    assert first["queries"][0]["result_summary"].startswith("AAPL: $")


async def test_update_context_sets_and_removes_keys_and_keeps_the_others(
    connect: Connect,
) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)
        await ok(
            alice,
            "update-session-context",
            session_id=sid,
            context={"thesis": "cloud growth", "scratch": [1, 2]},
            preferences={"detail": "high"},
        )

        updated = await ok(
            alice,
            "update-session-context",
            session_id=sid,
            context={"peer": {"symbol": "GOOGL"}},
            remove_context=["scratch"],
        )

    assert updated["context"] == {"thesis": "cloud growth", "peer": {"symbol": "GOOGL"}}
    assert updated["preferences"] == {"detail": "high"}


async def test_each_session_reads_as_a_json_resource(connect: Connect) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice, "AAPL")
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
        info = await ok(alice, "get-session-info", session_id=sid)

        read = await alice.read_resource(f"session://{sid}")

    [contents] = read.contents
    assert isinstance(contents, TextResourceContents)
    assert contents.mime_type == "application/json"
    body = json.loads(contents.text)
    assert body["session"]["session_id"] == sid
    assert body["stats"] == info["stats"]
    assert body["recent_queries"] == info["recent_queries"]


async def test_analytics_report_the_callers_finished_and_running_sessions(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice:
        equity = await new_session(alice, "AAPL", "MSFT", session_type="equity", tags=["q3"])
        crypto = await new_session(alice, "BTC", session_type="crypto")
        await new_session(alice, "SPY", session_type="macro", ttl_hours=TINY_TTL_HOURS)
        await new_session(alice, "NVDA", session_type="comparative")
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=equity)
        await ok(alice, "search-by-symbol", symbol="AAPL", session_id=equity)
        await ok(alice, "search-by-coin", symbol="BTC", session_id=crypto)
        await ok(alice, "close-analysis-session", session_id=equity)
        await ok(alice, "close-analysis-session", session_id=crypto)
        await run_cleanup(session_store)

        stats = await ok(alice, "get-session-analytics")
        only_equity = await ok(alice, "get-session-analytics", session_type="equity")

    assert (stats["scope"], stats["user_id"], stats["days"]) == ("user", "alice", 30)
    assert (stats["total_sessions"], stats["active_sessions"]) == (4, 1)
    assert stats["archived_sessions"] == 3
    assert stats["total_queries"] == 3
    assert stats["avg_queries_per_session"] == 1.0
    assert stats["abandonment_rate"] == pytest.approx(1 / 3, abs=1e-4)  # a rate, to 4 decimals
    assert stats["cache_hit_rate"] == pytest.approx(1 / 3, abs=1e-4)  # a rate, to 4 decimals
    assert stats["query_type_distribution"] == {"search_by_symbol": 2, "search_by_coin": 1}
    assert stats["session_type_breakdown"] == {"crypto": 1, "equity": 1, "macro": 1}
    assert stats["top_assets"] == [{"asset": a, "count": 1} for a in ("AAPL", "BTC", "MSFT", "SPY")]
    assert stats["popular_tags"] == [{"tag": "q3", "count": 1}]
    assert stats["message"] is None
    assert (only_equity["session_type"], only_equity["total_sessions"]) == ("equity", 1)
    assert only_equity["total_queries"] == 2


async def test_analytics_without_sessions_say_so(connect: Connect) -> None:
    async with connect("carol") as carol:
        stats = await ok(carol, "get-session-analytics", days=7)

    assert stats["total_sessions"] == 0
    assert stats["message"]
