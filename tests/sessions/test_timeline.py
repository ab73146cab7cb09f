"""Timelines and forks, run on every deployment in ``STORE_KINDS``: what a session saw is
kept with each write, reads back the same once archived, and a fork at a point holds
exactly what the session held there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fiml.core.errors import InvalidCursorError, InvalidInputError, SessionNotFoundError
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.events import MAX_RECORDED_QUOTE_BYTES, RecordedQuote, recorded_quote
from fiml.sessions.timeline import encode_timeline_cursor
from tests.clock import MovableClock

ON_CLUSTER = True
"""The APPLY and CREATE scripts write the timeline, and archival reads it: on the cluster too."""
QUOTE_TIME = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)


def quote(price: float, **extra: Any) -> RecordedQuote:
    figures = {"symbol": "AAPL", "price": price, "currency": "USD", **extra}
    return recorded_quote(
        provider="yahoo",
        quote_timestamp=QUOTE_TIME,
        fetched_at=QUOTE_TIME + timedelta(seconds=2),
        cached=False,
        figures=figures,
    )


def tracked(n: int) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": "AAPL", "n": n})


async def _timeline(store: SessionStore, sid: Any, *, limit: int = 2) -> list[Any]:
    """Every event, read a page of ``limit`` at a time (so paging is exercised)."""
    events, cursor = [], None
    while True:
        page = await store.get_timeline(sid, limit=limit, cursor=cursor)
        events += page.events
        if page.next_cursor is None:
            return events
        cursor = page.next_cursor


async def _session_with_record(store: SessionStore, clock: MovableClock) -> Any:
    """A session with: a context change, query 1 (with context), a preference change,
    query 2, a context removal, query 3; the clock moved a minute between writes."""
    session = await store.create_session(["AAPL"], "equity", user_id="alice", ttl_hours=1)
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: store.update_state(session.id, context={"thesis": "value"}),
        lambda: store.append_query(session.id, tracked(1), context={"last": 1}, quote=quote(101.5)),
        lambda: store.update_state(session.id, preferences={"currency": "EUR"}),
        lambda: store.append_query(session.id, tracked(2), quote=quote(102.0)),
        lambda: store.update_state(session.id, remove_context=["thesis"]),
        lambda: store.append_query(session.id, tracked(3)),
    ]
    for step in steps:
        clock.move(timedelta(minutes=1))
        await step()
    return session


async def test_timeline_records_queries_and_state_changes_in_order(
    store: SessionStore, clock: MovableClock
) -> None:
    session = await _session_with_record(store, clock)
    events = await _timeline(store, session.id)
    kinds = [e.kind for e in events]
    assert kinds == ["context", "context", "query", "preferences", "query", "context", "query"]
    assert [e.seq for e in events] == list(range(1, 8))
    assert [e.at for e in events] == sorted(e.at for e in events)
    first = events[2].data
    assert first["query_type"] == "price" and first["cache_hit"] is False
    assert first["quote"]["provider"] == "yahoo"
    assert first["quote"]["figures"] == {"symbol": "AAPL", "price": 101.5, "currency": "USD"}
    assert datetime.fromisoformat(first["quote"]["quote_timestamp"]) == QUOTE_TIME
    assert events[1].data == {"set": {"last": 1}, "removed": []}
    assert events[5].data == {"set": {}, "removed": ["thesis"]}
    assert events[6].data["quote"] is None


async def test_a_repeated_query_adds_no_event(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    record = tracked(1)
    await store.append_query(session.id, record, quote=quote(1.0))
    await store.append_query(session.id, record, quote=quote(2.0))
    events = await _timeline(store, session.id)
    assert [e.data["quote"]["figures"]["price"] for e in events] == [1.0]


async def test_a_refused_write_records_no_event(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    await store.close_session(session.id)
    with pytest.raises(Exception, match="closed"):
        await store.update_state(session.id, context={"a": 1})
    assert (await store.get_timeline(session.id)).events == []


async def test_timeline_after_archival_equals_the_one_read_while_active(
    store: SessionStore, clock: MovableClock
) -> None:
    session = await _session_with_record(store, clock)
    before = await _timeline(store, session.id)
    await store.close_session(session.id)
    assert (await store.cleanup_expired_sessions()).archived == 1
    archived = await store.get_session(session.id)
    assert archived is not None and archived.is_archived
    assert await _timeline(store, session.id) == before
    assert await _timeline(store, session.id, limit=100) == before


async def test_archiving_one_session_now_carries_its_timeline(
    store: SessionStore, clock: MovableClock
) -> None:
    session = await _session_with_record(store, clock)
    before = await _timeline(store, session.id)
    assert await store.archive_session(session.id)
    assert await _timeline(store, session.id) == before


async def test_timeline_arguments_are_checked(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    for bad in ("nope", 5, encode_timeline_cursor(1) + "x", "ZTow"):  # "ZTow" is "e:0"
        with pytest.raises(InvalidCursorError):
            await store.get_timeline(session.id, cursor=bad)  # type: ignore[arg-type]
    for limit in (0, -1, 1001, True):
        with pytest.raises(InvalidInputError) as info:
            await store.get_timeline(session.id, limit=limit)
        assert info.value.field == "limit"
    with pytest.raises(SessionNotFoundError):
        await store.get_timeline("00000000-0000-4000-8000-000000000000")


def test_an_oversized_quote_is_recorded_within_the_cap_by_the_documented_rule() -> None:
    long_name = quote(1.0, name="N" * 3000, market="us")
    assert long_name.truncated
    assert long_name.figures == {"symbol": "AAPL", "price": 1.0, "currency": "USD"}
    assert len(long_name.model_dump_json()) <= MAX_RECORDED_QUOTE_BYTES
    long_symbol = quote(1.0, symbol="S" * 3000)
    assert long_symbol.truncated and long_symbol.figures == {}
    assert len(long_symbol.model_dump_json()) <= MAX_RECORDED_QUOTE_BYTES
    assert not quote(1.0, name="Apple Inc.").truncated


async def test_fork_after_query_n_holds_exactly_the_first_n_queries(
    store: SessionStore, clock: MovableClock
) -> None:
    origin = await _session_with_record(store, clock)
    full = await store.get_session(origin.id, history_limit=ALL_QUERIES)
    assert full is not None
    origin_events = await _timeline(store, origin.id)
    expected = {
        0: ({"thesis": "value"}, {}),
        1: ({"thesis": "value", "last": 1}, {}),
        2: ({"thesis": "value", "last": 1}, {"currency": "EUR"}),
        3: ({"last": 1}, {"currency": "EUR"}),
    }
    for n, (context, preferences) in expected.items():
        fork = await store.fork_session(origin.id, "alice", after_queries=n)
        read = await store.get_session(fork.id, history_limit=ALL_QUERIES)
        assert read is not None and read.user_id == "alice" and read.id != origin.id
        assert read.state.history.queries == full.state.history.queries[:n]
        assert read.state.history.total_queries == n
        assert read.state.context == context
        assert read.state.preferences == preferences
        assert read.assets == ["AAPL"] and read.type == origin.type
        assert read.state.metadata["forked_from"] == {
            "session_id": str(origin.id),
            "after_queries": n,
        }
        fork_events = await _timeline(store, fork.id)
        assert fork_events == origin_events[: len(fork_events)]
        assert sum(e.kind == "query" for e in fork_events) == n


async def test_fork_at_a_time_holds_what_the_session_held_then(
    store: SessionStore, clock: MovableClock
) -> None:
    origin = await _session_with_record(store, clock)
    events = await _timeline(store, origin.id)
    at = events[3].at  # the preference change, after query 1
    fork = await store.fork_session(origin.id, "alice", at=at)
    read = await store.get_session(fork.id, history_limit=ALL_QUERIES)
    assert read is not None
    assert [q.parameters["n"] for q in read.state.history.queries] == [1]
    assert read.state.context == {"thesis": "value", "last": 1}
    assert read.state.preferences == {"currency": "EUR"}
    assert read.state.metadata["forked_from"]["at"] == at.isoformat()
    now = await store.fork_session(origin.id, "alice")
    whole = await store.get_session(now.id, history_limit=ALL_QUERIES)
    assert whole is not None and whole.state.history.total_queries == 3
    assert whole.state.context == {"last": 1}


async def test_fork_of_an_archived_session(store: SessionStore, clock: MovableClock) -> None:
    origin = await _session_with_record(store, clock)
    assert await store.archive_session(origin.id)
    fork = await store.fork_session(origin.id, "alice", after_queries=2)
    read = await store.get_session(fork.id, history_limit=ALL_QUERIES)
    assert read is not None and not read.is_archived
    assert read.state.history.total_queries == 2
    assert read.state.preferences == {"currency": "EUR"}


async def test_fork_arguments_are_checked_and_change_nothing(
    store: SessionStore, clock: MovableClock
) -> None:
    origin = await _session_with_record(store, clock)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"after_queries": 4}, "after_queries"),
        ({"after_queries": -1}, "after_queries"),
        ({"after_queries": True}, "after_queries"),
        ({"after_queries": "2"}, "after_queries"),
        ({"at": "yesterday"}, "at"),
        ({"at": origin.created_at - timedelta(seconds=1)}, "at"),
        ({"after_queries": 1, "at": origin.created_at}, "at"),
    ]
    for arguments, field in cases:
        with pytest.raises(InvalidInputError) as info:
            await store.fork_session(origin.id, "alice", **arguments)
        assert info.value.field == field
    assert await store.list_user_sessions("alice") == await store.list_user_sessions(
        "alice", limit=1
    )
    with pytest.raises(SessionNotFoundError):
        await store.fork_session("00000000-0000-4000-8000-000000000000", "alice")
