"""The SessionStore contract, run on every deployment in ``STORE_KINDS``.

A backend cannot pass by having easier tests of its own: everything a user relies on is
asserted here, through the public store API.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import pytest

from fiml.core.config import Settings
from fiml.core.errors import (
    ContextValueError,
    InvalidCursorError,
    InvalidInputError,
    InvalidSessionIdError,
    InvalidSessionTypeError,
    InvalidTTLError,
    QueryLimitExceededError,
    SessionArchivedError,
    SessionClosedError,
    SessionConflictError,
    SessionExpiredError,
    SessionNotFoundError,
)
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore, SessionType
from fiml.sessions.models import SessionStatus, utcnow
from fiml.sessions.store import changes_since_read
from tests.clock import MovableClock

ON_CLUSTER = True
"""The whole contract runs on the Redis Cluster deployment too (tests/conftest.py)."""

AGO = timedelta(hours=2)
"""How far back the clock is moved to create sessions that have expired by now (their TTL
is an hour): the store and the session's own properties then agree once it is moved back."""


def query(n: int, *, hit: bool = False, kind: str = "price") -> QueryRecord:
    return QueryRecord(
        query_type=kind,
        parameters={"symbol": f"S{n}"},
        result_summary=f"S{n}: ${n}.00",
        execution_time_ms=1.5,
        cache_hit=hit,
    )


async def test_created_session_round_trips(store: SessionStore) -> None:
    created = await store.create_session(
        ["aapl", "msft"], "equity", user_id="u1", ttl_hours=2, tags=["tech", "q3"]
    )
    loaded = await store.get_session(str(created.id))
    assert loaded is not None
    assert loaded.assets == ["AAPL", "MSFT"]
    assert loaded.tags == ["tech", "q3"]
    assert loaded.created_at == created.created_at
    assert loaded.expires_at == created.expires_at
    assert loaded.expires_at - loaded.created_at == timedelta(hours=2)
    assert loaded.status is SessionStatus.ACTIVE
    assert not loaded.is_expired


async def test_no_lost_writes_through_update_session(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], SessionType.EQUITY, user_id="u1")

    async def writer(i: int) -> None:
        mine = await store.get_session(session.id)
        assert mine is not None
        mine.add_query(query(i, hit=i % 5 == 0))
        mine.state.update_context(f"key_{i}", {"i": i})
        await store.update_session(mine.id, mine)

    await asyncio.gather(*(writer(i) for i in range(50)))

    final = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert final is not None
    history = final.state.history
    assert len(history.queries) == 50
    assert history.total_queries == 50
    assert history.cache_hits == 10
    assert history.cache_hit_rate == pytest.approx(10 / 50)
    assert sorted(q.parameters["symbol"] for q in history.queries) == sorted(
        f"S{i}" for i in range(50)
    )
    assert {f"key_{i}" for i in range(50)} == set(final.state.context)
    assert history.get_query_types_summary() == {"price": 50}


async def test_no_lost_writes_through_append_query(store: SessionStore) -> None:
    session = await store.create_session(["BTC"], "crypto", user_id="u1")
    results = await asyncio.gather(
        *(store.append_query(session.id, query(i, hit=i < 20)) for i in range(50))
    )
    assert sorted(r.total_queries for r in results) == list(range(1, 51))
    final = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert final is not None
    assert final.state.history.total_queries == 50
    assert len(final.state.history.queries) == 50
    assert final.state.history.cache_hit_rate == pytest.approx(0.4)


async def test_update_removes_and_changes_keys_but_keeps_others(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    session.state.update_context("a", 1)
    session.state.update_context("b", 2)
    await store.update_session(session.id, session)

    first = await store.get_session(session.id)
    second = await store.get_session(session.id)
    assert first is not None and second is not None
    del first.state.context["a"]
    first.state.update_context("b", 20)
    second.state.update_context("c", 3)
    await store.update_session(first.id, first)
    await store.update_session(second.id, second)

    final = await store.get_session(session.id)
    assert final is not None
    assert final.state.context == {"b": 20, "c": 3}


async def test_a_value_changed_to_an_equal_comparing_one_is_saved(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.update_state(session.id, context={"flag": 1, "ratio": 1, "same": [1, 2]})

    loaded = await store.get_session(session.id)
    assert loaded is not None
    loaded.state.update_context("flag", True)  # True == 1 in Python, not in JSON
    loaded.state.update_context("ratio", 1.0)
    loaded.state.update_context("same", [1, 2])
    await store.update_session(loaded.id, loaded)

    final = await store.get_session(session.id)
    assert final is not None
    assert final.state.context == {"flag": True, "ratio": 1.0, "same": [1, 2]}
    assert final.state.context["flag"] is True
    assert isinstance(final.state.context["ratio"], float)


async def test_strict_update_refuses_a_stale_copy(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    stale = await store.get_session(session.id)
    fresh = await store.get_session(session.id)
    assert stale is not None and fresh is not None
    fresh.state.update_context("winner", True)
    await store.update_session(fresh.id, fresh, strict=True)

    stale.state.update_context("loser", True)
    stale.add_query(query(1))
    with pytest.raises(SessionConflictError) as caught:
        await store.update_session(stale.id, stale, strict=True)
    assert caught.value.expected_version == stale.version
    assert caught.value.actual_version == fresh.version

    final = await store.get_session(session.id)
    assert final is not None
    assert final.state.context == {"winner": True}
    assert final.state.history.total_queries == 0


async def test_resending_the_same_session_does_not_duplicate_queries(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    session.add_query(query(1))
    await store.update_session(session.id, session)
    await store.update_session(session.id, session)
    copy = type(session).from_dict(session.to_dict())
    await store.update_session(copy.id, copy)
    final = await store.get_session(session.id)
    assert final is not None
    assert final.state.history.total_queries == 1


async def test_appending_a_query_again_records_it_once(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    first = query(1, hit=True)
    counters = await store.append_query(session.id, first)
    assert (counters.total_queries, counters.cache_hits, counters.added_queries) == (1, 1, 1)
    retry = first.model_copy(update={"result_summary": "a later answer"})
    again = await store.append_query(session.id, retry)
    assert (again.total_queries, again.cache_hits, again.added_queries) == (1, 1, 0)
    stored = await store.get_session(session.id)
    assert stored is not None
    assert [q.result_summary for q in stored.state.history.queries] == [first.result_summary]
    assert stored.state.history.query_type_counts == {first.query_type: 1}


async def test_reading_loads_only_recent_history_unless_asked(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    for i in range(30):
        await store.append_query(session.id, query(i, kind="price" if i % 2 else "news"))
    recent = await store.get_session(session.id, history_limit=5)
    assert recent is not None
    assert [q.parameters["symbol"] for q in recent.state.history.queries] == [
        f"S{i}" for i in range(25, 30)
    ]
    assert recent.state.history.total_queries == 30
    assert recent.state.history.get_query_types_summary() == {"price": 15, "news": 15}

    page = await store.get_history(session.id, offset=10, limit=7)
    assert [q.parameters["symbol"] for q in page.queries] == [f"S{i}" for i in range(10, 17)]
    assert page.next_offset == 17
    last = await store.get_history(session.id, offset=28, limit=7)
    assert len(last.queries) == 2
    assert last.next_offset is None


async def test_expired_session_stays_readable_until_archived(
    store: SessionStore, clock: MovableClock
) -> None:
    clock.move(-AGO)
    session = await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=1)
    for i in range(3):
        await store.append_query(session.id, query(i))
    clock.move(AGO)  # now: an hour past its TTL

    expired = await store.get_session(session.id)
    assert expired is not None
    assert expired.is_expired
    assert expired.status is SessionStatus.EXPIRED
    assert expired.state.history.total_queries == 3
    with pytest.raises(SessionExpiredError):
        await store.append_query(session.id, query(9))

    assert (await store.cleanup_expired_sessions()).archived == 1
    archived = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert archived is not None
    assert archived.is_archived
    assert archived.status is SessionStatus.ARCHIVED
    assert [q.parameters["symbol"] for q in archived.state.history.queries] == ["S0", "S1", "S2"]
    assert (await store.cleanup_expired_sessions()).archived == 0


async def test_the_stores_clock_says_when_a_session_expires(
    store: SessionStore, clock: MovableClock
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=1)
    clock.move(timedelta(minutes=59))
    await store.append_query(session.id, query(1))
    assert (await store.cleanup_expired_sessions()).archived == 0
    [running] = await store.list_user_sessions("u1")
    assert running.status is SessionStatus.ACTIVE and not running.is_expired

    clock.move(timedelta(minutes=2))  # a minute past its TTL, by the store's clock
    with pytest.raises(SessionExpiredError):
        await store.append_query(session.id, query(2))
    [listed] = await store.list_user_sessions("u1")
    assert listed.status is SessionStatus.EXPIRED and listed.is_expired
    assert (await store.cleanup_expired_sessions()).archived == 1
    archived = await store.get_session(session.id)
    assert archived is not None and archived.status is SessionStatus.ARCHIVED
    assert archived.state.history.total_queries == 1


async def test_two_cleanups_at_once_archive_each_session_once(
    store: SessionStore, settings: Settings, clock: MovableClock
) -> None:
    ids = []
    clock.move(-AGO)
    for i in range(12):
        s = await store.create_session([f"A{i}"], "equity", user_id="u1", ttl_hours=1)
        await store.append_query(s.id, query(i))
        ids.append(s.id)
    clock.move(AGO)  # now: every one an hour past its TTL, for both stores

    async with SessionStore(settings) as other:
        counts = await asyncio.gather(
            store.cleanup_expired_sessions(batch_size=5),
            other.cleanup_expired_sessions(batch_size=5),
        )
    assert sum(c.archived for c in counts) == 12
    for sid in ids:
        archived = await store.get_session(sid, history_limit=ALL_QUERIES)
        assert archived is not None and archived.is_archived
        assert archived.state.history.total_queries == 1
        assert len(archived.state.history.queries) == 1
    listed = await store.list_user_sessions("u1", include_archived=True)
    assert len(listed) == 12


async def test_archived_session_refuses_writes_and_never_comes_back(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    session.state.update_context("k", "v")
    await store.update_session(session.id, session)
    assert await store.archive_session(session.id) is True
    assert await store.archive_session(session.id) is False

    stale = await store.get_session(session.id)
    assert stale is not None and stale.is_archived
    stale.state.update_context("k", "changed")
    with pytest.raises(SessionArchivedError):
        await store.update_session(stale.id, stale)
    with pytest.raises(SessionArchivedError):
        await store.append_query(session.id, query(1))
    with pytest.raises(SessionArchivedError):
        await store.extend_session(session.id, 1)
    again = await store.get_session(session.id)
    assert again is not None
    assert again.is_archived
    assert again.state.context == {"k": "v"}
    assert await store.list_user_sessions("u1") == []


async def test_close_marks_finished_and_read_only(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    closed = await store.close_session(session.id)
    assert closed.is_closed
    assert closed.status is SessionStatus.CLOSED
    assert closed.closed_at is not None
    with pytest.raises(SessionClosedError):
        await store.append_query(session.id, query(1))
    with pytest.raises(SessionClosedError):
        await store.close_session(session.id)
    assert (await store.cleanup_expired_sessions()).archived == 1
    archived = await store.get_session(session.id)
    assert archived is not None and archived.is_archived and archived.is_closed


async def test_extend_and_fractional_ttl(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=5 / 60)
    assert session.expires_at - session.created_at == timedelta(minutes=5)
    extended = await store.extend_session(session.id, 0.5)
    assert extended.expires_at - session.expires_at == timedelta(minutes=30)

    mine = await store.get_session(session.id)
    assert mine is not None
    mine.extend(1)
    await store.update_session(mine.id, mine)
    final = await store.get_session(session.id)
    assert final is not None
    assert final.expires_at - session.expires_at == timedelta(minutes=90)


async def test_ttl_caps(store: SessionStore) -> None:
    maximum = store.settings.session_max_ttl_hours
    for bad in (0, -1, maximum + 1, float("nan"), float("inf"), "24", True):
        with pytest.raises(InvalidTTLError) as caught:
            await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=bad)  # type: ignore[arg-type]
        assert caught.value.field == "ttl_hours"
    assert await store.list_user_sessions("u1") == []

    session = await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=maximum - 1)
    with pytest.raises(InvalidTTLError) as caught:
        await store.extend_session(session.id, 2)
    assert caught.value.field == "hours"
    with pytest.raises(InvalidTTLError):
        await store.extend_session(session.id, -1)
    unchanged = await store.get_session(session.id)
    assert unchanged is not None
    assert unchanged.expires_at == session.expires_at
    assert unchanged.version == session.version


async def test_query_limit(tmp_path: object, store_kind: str) -> None:
    from pathlib import Path

    from tests.conftest import settings_for

    settings = await settings_for(
        store_kind, Path(str(tmp_path)), session_max_queries_per_session=3
    )
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        for i in range(3):
            await store.append_query(session.id, query(i, hit=True))
        with pytest.raises(QueryLimitExceededError) as caught:
            await store.append_query(session.id, query(3))
        assert caught.value.limit == 3

        mine = await store.get_session(session.id)
        assert mine is not None
        mine.add_query(query(4))
        mine.state.update_context("also", "refused")
        with pytest.raises(QueryLimitExceededError):
            await store.update_session(mine.id, mine)

        final = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert final is not None
        assert final.state.history.total_queries == 3
        assert final.state.history.cache_hits == 3
        assert len(final.state.history.queries) == 3
        assert final.state.context == {}


async def test_unknown_ids(store: SessionStore) -> None:
    missing = uuid4()
    assert await store.get_session(missing) is None
    assert await store.delete_session(missing) is False
    with pytest.raises(SessionNotFoundError) as caught:
        await store.append_query(missing, query(1))
    assert caught.value.session_id == str(missing)
    with pytest.raises(SessionNotFoundError):
        await store.extend_session(missing, 1)
    with pytest.raises(SessionNotFoundError):
        await store.close_session(missing)
    with pytest.raises(SessionNotFoundError):
        await store.archive_session(missing)
    ghost = await store.create_session(["AAPL"], "equity", user_id="u1")
    assert await store.delete_session(ghost.id) is True
    ghost.add_query(query(1))
    with pytest.raises(SessionNotFoundError):
        await store.update_session(ghost.id, ghost)
    assert await store.get_session(ghost.id) is None


async def test_bad_input_gets_typed_errors_and_writes_nothing(store: SessionStore) -> None:
    with pytest.raises(InvalidSessionIdError) as bad_id:
        await store.get_session("not-a-uuid")
    assert bad_id.value.field == "session_id"
    with pytest.raises(InvalidSessionTypeError) as bad_type:
        await store.create_session(["AAPL"], "astrology", user_id="u1")
    assert bad_type.value.field == "session_type"
    with pytest.raises(InvalidInputError) as bad_assets:
        await store.create_session([], "equity", user_id="u1")
    assert bad_assets.value.field == "assets"
    with pytest.raises(InvalidInputError):
        await store.create_session(["A" * 500], "equity", user_id="u1")
    with pytest.raises(InvalidInputError):
        await store.create_session(["AAPL"], "equity", user_id="u1", tags=[""])
    assert await store.list_user_sessions("u1") == []

    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    with pytest.raises(ContextValueError):
        session.state.update_context("when", object())
    with pytest.raises(ContextValueError):
        session.state.update_context("nan", float("nan"))
    with pytest.raises(ContextValueError):
        session.state.update_context("huge", "x" * (65 * 1024))
    session.state.context["sneaky"] = {1, 2}  # bypasses update_context
    session.add_query(query(1))
    with pytest.raises(ContextValueError):
        await store.update_session(session.id, session)
    with pytest.raises(ContextValueError):
        await store.update_state(session.id, context={"bad": object()})
    with pytest.raises(InvalidCursorError):
        await store.list_user_sessions_page("u1", cursor="garbage!")

    stored = await store.get_session(session.id)
    assert stored is not None
    assert stored.state.context == {}
    assert stored.state.history.total_queries == 0
    assert stored.version == 0


async def test_update_state_without_reading(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.update_state(session.id, context={"a": 1}, preferences={"style": "brief"})
    await store.update_state(session.id, context={"b": [1, 2]}, remove_context=["a"])
    final = await store.get_session(session.id)
    assert final is not None
    assert final.state.context == {"b": [1, 2]}
    assert final.state.get_preference("style") == "brief"


async def test_listing_is_per_user_newest_first_and_paginated(store: SessionStore) -> None:
    mine = [await store.create_session([f"A{i}"], "equity", user_id="alice") for i in range(7)]
    await store.create_session(["Z"], "equity", user_id="bob")
    await store.archive_session(mine[0].id)

    first = await store.list_user_sessions_page("alice", limit=3)
    assert [s.id for s in first.sessions] == [s.id for s in reversed(mine)][:3]
    assert first.next_cursor is not None
    second = await store.list_user_sessions_page("alice", limit=3, cursor=first.next_cursor)
    assert [s.id for s in second.sessions] == [s.id for s in reversed(mine)][3:6]
    assert second.next_cursor is None

    everything = await store.list_user_sessions("alice", include_archived=True)
    assert [s.id for s in everything] == [s.id for s in reversed(mine)]
    assert everything[-1].is_archived
    assert {s.user_id for s in everything} == {"alice"}
    assert await store.list_user_sessions("carol") == []
    with pytest.raises(InvalidInputError):
        await store.list_user_sessions("alice", limit=0)


async def test_retention_deletes_only_old_archives(store: SessionStore) -> None:
    old = await store.create_session(["OLD"], "equity", user_id="u1")
    await store.archive_session(old.id)
    live = await store.create_session(["NEW"], "equity", user_id="u1")
    assert await store.delete_old_archived_sessions(retention_days=1) == 0
    assert await store.delete_old_archived_sessions(retention_days=0) == 1
    assert await store.get_session(old.id) is None
    assert await store.get_session(live.id) is not None


async def test_state_survives_a_new_store(store: SessionStore, settings: Settings) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.append_query(session.id, query(1, hit=True))
    await store.update_state(session.id, context={"thesis": "margin expansion"})
    await store.shutdown()
    async with SessionStore(settings) as reopened:
        again = await reopened.get_session(session.id)
    assert again is not None
    assert again.state.get_context("thesis") == "margin expansion"
    assert again.state.history.cache_hit_rate == 1.0
    assert again.last_accessed_at >= session.last_accessed_at
    assert again.last_accessed_at <= utcnow()


async def test_a_state_section_never_grows_past_its_key_limit(store: SessionStore) -> None:
    from fiml.sessions.models import MAX_STATE_KEYS

    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.update_state(session.id, context={f"k{i}": i for i in range(MAX_STATE_KEYS)})
    with pytest.raises(ContextValueError) as caught:
        await store.update_state(session.id, context={"one-more": 1})
    assert caught.value.field == "context"

    other = await store.get_session(session.id)
    assert other is not None
    other.state.context.pop("k0")
    other.state.context["k0"] = "replaced"
    other.add_query(query(1))
    await store.update_session(other.id, other)
    await store.update_state(session.id, context={"swap": 1}, remove_context=["k1"])

    final = await store.get_session(session.id)
    assert final is not None
    assert len(final.state.context) == MAX_STATE_KEYS
    assert final.state.context["k0"] == "replaced"
    assert "swap" in final.state.context and "k1" not in final.state.context
    assert final.state.history.total_queries == 1


async def test_a_read_session_reports_only_what_its_caller_changed(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity")
    await store.update_state(
        session.id,
        context={"a": 1, "b": [1.5, "x", None], "c": {"nested": {"deep": -0.0}}, "é": "ü"},
        preferences={"p": True, "big": 10**30},
    )
    loaded = await store.get_session(session.id)
    assert loaded is not None
    untouched = changes_since_read(loaded, strict=False)
    assert untouched.set_keys == {} and untouched.deleted_keys == {}
    assert untouched.new_queries == [] and untouched.assets is None and untouched.tags is None

    loaded.state.update_context("b", [1.5, "y", None])
    loaded.state.update_context("a", 1.0)  # equal in Python, different JSON: a change
    del loaded.state.preferences["p"]
    changes = changes_since_read(loaded, strict=False)
    assert changes.set_keys == {"context": {"b": [1.5, "y", None], "a": 1.0}}
    assert changes.deleted_keys == {"preferences": ["p"]}
    await store.update_session(loaded.id, loaded)
    again = await store.get_session(session.id)
    assert again is not None
    assert again.state.context == {
        "a": 1.0,
        "b": [1.5, "y", None],
        "c": {"nested": {"deep": -0.0}},
        "é": "ü",
    }
    assert again.state.preferences == {"big": 10**30}


async def test_each_read_gets_queries_of_its_own(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity")
    screen = QueryRecord(query_type="screen", parameters={"filters": {"pe": [10, 20]}})
    for record in (query(1), screen, query(2, hit=True)):
        await store.append_query(session.id, record)
    first = await store.get_session(session.id)
    assert first is not None
    stored = [q.model_copy(deep=True) for q in first.state.history.queries]

    for record in first.state.history.queries:  # what one caller does to its copy
        record.parameters["symbol"] = "MSFT"
        record.result_summary = "changed"
    first.state.history.queries[1].parameters["filters"]["pe"].append(30)
    second = await store.get_session(session.id)
    assert second is not None
    assert second.state.history.queries == stored
    for mine, theirs in zip(first.state.history.queries, second.state.history.queries, strict=True):
        assert mine is not theirs and mine.parameters is not theirs.parameters
