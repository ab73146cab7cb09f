"""Reads on behalf of a user, run on every deployment in ``STORE_KINDS``: a session that is
someone else's reads as absent, after exactly the reads an unknown id costs; and one
recorded query read back by its id, from either tier."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from fiml.core.errors import InvalidInputError, InvalidSessionIdError
from fiml.sessions import QueryRecord, SessionStore

ON_CLUSTER = True
"""Owned reads run on the Redis Cluster deployment too (tests/conftest.py)."""

UNKNOWN = UUID("00000000-0000-4000-8000-000000000000")


def record(symbol: str) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": symbol}, result_summary="ok")


def tiered(store: SessionStore) -> bool:
    """Whether the store has an archive of its own (Redis+SQL), not its one SQL database."""
    active: object = store.backend
    return active is not store.archive


def spy_on_loads(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every session read the store makes from now on: (tier, how many queries it loads,
    for which owner, whether it found nothing).

    The tiers are the store's own (``store.backend``, ``store.archive``); each ``load`` is
    wrapped in place and still does its real read."""
    calls: list[tuple[Any, ...]] = []

    def counted(role: str, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def load(session_id: UUID, *, recent_queries: int | None, owner: str | None) -> Any:
            found = await real(session_id, recent_queries=recent_queries, owner=owner)
            calls.append((role, recent_queries, owner, found is None))
            return found

        return load

    monkeypatch.setattr(store.backend, "load", counted("active", store.backend.load))
    if tiered(store):  # SQL alone: one tier plays both parts
        monkeypatch.setattr(store.archive, "load", counted("archive", store.archive.load))
    return calls


async def test_a_users_own_sessions_read_as_get_session_reads_them(store: SessionStore) -> None:
    active = await store.create_session(["AAPL"], "equity", user_id="alice")
    archived = await store.create_session(["MSFT"], "equity", user_id="alice")
    await store.archive_session(archived.id)

    found = await store.get_user_session(str(active.id), "alice", history_limit=0)
    kept = await store.get_user_session(archived.id, "alice")

    assert found is not None and found.id == active.id and found.assets == ["AAPL"]
    assert kept is not None and kept.is_archived


async def test_another_users_session_in_any_tier_reads_as_absent(store: SessionStore) -> None:
    active = await store.create_session(["AAPL"], "equity", user_id="bob")
    archived = await store.create_session(["MSFT"], "equity", user_id="bob")
    await store.archive_session(archived.id)
    anonymous = await store.create_session(["IBM"], "equity")

    for sid in (active.id, archived.id, anonymous.id, UNKNOWN):
        assert await store.get_user_session(sid, "alice") is None
    assert await store.get_session(active.id) is not None  # still there for bob


async def test_not_found_makes_the_same_reads_for_a_foreign_and_an_unknown_id(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = await store.create_session(["AAPL"], "equity", user_id="bob")
    archived = await store.create_session(["MSFT"], "equity", user_id="bob")
    await store.archive_session(archived.id)
    calls = spy_on_loads(store, monkeypatch)

    reads = []
    for sid in (UNKNOWN, active.id, archived.id):
        calls.clear()
        assert await store.get_user_session(sid, "alice", history_limit=3) is None
        reads.append(list(calls))

    miss = [("active", 3, "alice", True)]
    expected = [*miss, ("archive", 3, "alice", True)] if tiered(store) else miss
    assert reads == [expected, expected, expected]


async def test_a_foreign_and_an_unknown_id_run_the_same_sql(store: SessionStore) -> None:
    foreign = await store.create_session(["AAPL"], "equity", user_id="bob")
    await store.append_query(foreign.id, record("AAPL"))
    if tiered(store):  # on Redis+SQL the SQL tier sees the archive probe
        await store.archive_session(foreign.id)
    statements: list[tuple[str, list[Any]]] = []

    def heard(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        shown = ["<sid>" if str(v).replace("-", "") in sids else v for v in values]
        statements.append((statement, shown))

    sids = {UNKNOWN.hex, foreign.id.hex}
    runs = []
    event.listen(Engine, "before_cursor_execute", heard)  # every engine, SQLite's thread's too
    try:
        for sid in (UNKNOWN, foreign.id):
            statements.clear()
            assert await store.get_user_session(sid, "alice") is None
            runs.append(list(statements))
    finally:
        event.remove(Engine, "before_cursor_execute", heard)

    assert runs[0] and runs[0] == runs[1]


async def test_a_user_read_refuses_bad_arguments(store: SessionStore) -> None:
    with pytest.raises(InvalidSessionIdError):
        await store.get_user_session("not-a-uuid", "alice")
    with pytest.raises(InvalidInputError) as refused:
        await store.get_user_session(UNKNOWN, 7)  # type: ignore[arg-type]
    assert refused.value.field == "user_id"
    with pytest.raises(InvalidInputError) as refused:
        await store.get_user_session(UNKNOWN, "alice", history_limit=-2)
    assert refused.value.field == "history_limit"


async def test_a_recorded_query_reads_back_by_id_from_either_tier(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    first, second = record("AAPL"), record("MSFT")
    for query in (first, second):
        await store.append_query(session.id, query)

    found = await store.get_query(str(session.id), first.id)
    assert found is not None and found.id == first.id
    assert (found.query_type, found.parameters) == ("price", {"symbol": "AAPL"})
    assert await store.get_query(session.id, uuid4()) is None
    assert await store.get_query(UNKNOWN, first.id) is None

    await store.archive_session(session.id)
    archived = await store.get_query(session.id, second.id)
    assert archived is not None and archived.parameters == {"symbol": "MSFT"}


async def test_a_query_read_refuses_an_id_that_is_not_a_uuid(store: SessionStore) -> None:
    with pytest.raises(InvalidInputError) as refused:
        await store.get_query(UNKNOWN, str(uuid4()))  # type: ignore[arg-type]
    assert refused.value.field == "query_id"
