"""PostgreSQL alone: a write of one query at most is one read and one statement, in
autocommit mode, on one connection; the statement writes the session's row, its query,
its timeline events and its search terms in one transaction, or nothing at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from fiml.core.config import Settings
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from tests.conftest import settings_for, sql_archive

Write = Callable[[], Awaitable[object]]

_XMIN = """
SELECT (SELECT xmin::text FROM sessions WHERE id = :sid) AS session,
       (SELECT array_agg(DISTINCT xmin::text) FROM session_queries WHERE session_id = :sid)
           AS queries,
       (SELECT array_agg(DISTINCT xmin::text) FROM session_events WHERE session_id = :sid)
           AS events,
       (SELECT array_agg(DISTINCT xmin::text) FROM session_search_terms
         WHERE session_id = :sid AND term = 'MSFT') AS terms
"""
"""The transaction ids that wrote a session's row, its queries, its events and its
MSFT search term (``xmin``: the transaction that wrote each row version)."""


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """PostgreSQL alone, emptied."""
    return await settings_for("postgres", tmp_path)


def price(symbol: str) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": symbol})


async def _track_with_context(store: SessionStore, sid: UUID) -> object:
    return await store.append_query(sid, price("msft"), context={"step": 1})


async def _track(store: SessionStore, sid: UUID) -> Write:
    return lambda: store.append_query(sid, price("AAPL"))


async def _track_with_a_new_asset(store: SessionStore, sid: UUID) -> Write:
    return lambda: _track_with_context(store, sid)


async def _set_context(store: SessionStore, sid: UUID) -> Write:
    return lambda: store.update_state(sid, context={"step": 1})


async def _retag(store: SessionStore, sid: UUID) -> Write:
    session = await store.get_session(sid)
    assert session is not None
    session.tags = ["kept", "new"]
    return lambda: store.update_session(sid, session)


@pytest.mark.parametrize(
    "write",
    [_track_with_a_new_asset, _track, _set_context, _retag],
    ids=["query-with-context-and-new-asset", "query-on-a-stored-asset", "context", "tags"],
)
async def test_a_write_of_one_query_at_most_is_two_statements_in_autocommit(
    settings: Settings, write: Callable[[SessionStore, UUID], Awaitable[Write]]
) -> None:
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u", tags=["kept"])
        engine = sql_archive(store).engine.sync_engine
        written = await write(store, session.id)
        statements: list[tuple[Any, str]] = []

        def heard(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append((conn.get_execution_options().get("isolation_level"), statement))

        event.listen(engine, "before_cursor_execute", heard)
        try:
            await written()
        finally:
            event.remove(engine, "before_cursor_execute", heard)

        assert len(statements) == 2, [sql for _, sql in statements]
        assert [level for level, _ in statements] == ["AUTOCOMMIT", "AUTOCOMMIT"]
        assert statements[0][1].startswith("SELECT")
        assert "bumped" in statements[1][1]


async def test_the_row_its_query_events_and_terms_are_one_transaction(
    settings: Settings,
) -> None:
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        await _track_with_context(store, session.id)

        async with sql_archive(store).engine.connect() as conn:
            row = (await conn.execute(text(_XMIN), {"sid": session.id})).mappings().one()

        # The creation wrote no query, event or MSFT term: each was written by the
        # transaction that last wrote the session's row.
        assert row["queries"] == [row["session"]]
        assert row["events"] == [row["session"]]
        assert row["terms"] == [row["session"]]
        timeline = await store.get_timeline(session.id)
        assert [e.kind for e in timeline.events] == ["context", "query"]
        assert [e.seq for e in timeline.events] == [1, 2]


@pytest.mark.parametrize(
    ("table", "check"),
    [
        ("session_search_terms", "term <> 'MSFT'"),
        ("session_events", "kind <> 'query'"),
        ("session_queries", "query_type <> 'price'"),
        ("sessions", "NOT context ? 'step'"),
    ],
)
async def test_a_statement_failing_midway_leaves_nothing_written(
    settings: Settings, table: str, check: str
) -> None:
    """A constraint refuses one of the rows the write's statement adds: the session's row,
    its queries, its timeline and its search terms are as they were."""
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        await store.update_state(session.id, context={"first": 1})
        before = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert before is not None
        timeline = await store.get_timeline(session.id)
        engine = sql_archive(store).engine
        add = f"ALTER TABLE {table} ADD CONSTRAINT fiml_test_refuses CHECK ({check}) NOT VALID"
        async with engine.begin() as conn:
            await conn.exec_driver_sql(add)
        try:
            with pytest.raises(DBAPIError):
                await _track_with_context(store, session.id)
        finally:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT fiml_test_refuses")

        after = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert after is not None
        assert after.version == before.version
        assert after.state.context == {"first": 1}
        assert after.state.history.total_queries == 0
        assert after.state.history.queries == []
        assert await store.get_timeline(session.id) == timeline
        assert (await store.search_user_sessions("u", asset="MSFT")).sessions == []


async def test_tags_set_in_the_statement_keep_those_kept_and_drop_the_others(
    settings: Settings,
) -> None:
    """The statement deletes only the tags no longer set (its CTEs run in no given order),
    and setting none deletes them all."""
    async with SessionStore(settings) as store:
        created = await store.create_session(["AAPL"], "equity", user_id="u", tags=["kept", "gone"])

        async def found(tag: str) -> list[UUID]:
            page = await store.search_user_sessions("u", tag=tag)
            return [s.id for s in page.sessions]

        for tags, present, absent in [
            (["kept", "new"], ["kept", "new"], ["gone"]),
            ([], [], ["kept", "new", "gone"]),
        ]:
            session = await store.get_session(created.id)
            assert session is not None
            session.tags = tags
            await store.update_session(created.id, session)
            for tag in present:
                assert await found(tag) == [created.id]
            for tag in absent:
                assert await found(tag) == []
