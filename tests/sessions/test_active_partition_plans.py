"""On PostgreSQL the statements that read or write an active session are planned over the
active partitions only, whatever the number of months retained: each statement the
store sends is explained (``EXPLAIN (FORMAT JSON)``, with the parameters it was sent
with) and the partitions its plan names are counted. An archived session is still read,
its queries from its month's partition alone; a write to it is refused as archived; an
unknown id and another owner's session cost the same reads. The archive of Redis, which
holds no active session, reads by id in one lookup."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.core.errors import SessionArchivedError
from fiml.sessions import SessionStore
from fiml.sessions.backends.base import SessionChanges
from fiml.sessions.backends.sql_partitions import (
    ACTIVE_MONTH,
    in_active_partition,
    sessions_table,
)
from fiml.sessions.models import QueryRecord
from tests.clock import MovableClock
from tests.conftest import settings_for, sql_archive

pytestmark = pytest.mark.asyncio

_ACTIVE = {"sessions_active", "session_queries_active"}
_PARTITIONED = ("sessions", "session_queries")
_ARCHIVED_IN = datetime(2030, 2, 10, tzinfo=UTC)
_NOW = datetime(2030, 4, 5, tzinfo=UTC)


@pytest.fixture
def store_kind() -> str:
    """PostgreSQL alone (conftest's ``store`` is built for it)."""
    return "postgres"


@pytest.fixture
def pg_store(store: SessionStore, clock: MovableClock) -> tuple[SessionStore, MovableClock]:
    return store, clock


async def _with_months(store: SessionStore, clock: MovableClock) -> UUID:
    """Six monthly partitions (January to June 2030) and a session archived in February,
    with one query; the clock then in April."""
    for month in (datetime(2030, 1, 5, tzinfo=UTC), _NOW):
        clock.set_to(month)
        await store.prepare_archive()
    clock.set_to(_ARCHIVED_IN)
    archived = await store.create_session(["AAPL"], "equity", user_id="u")
    await store.append_query(archived.id, QueryRecord(query_type="price", parameters={}))
    assert await store.archive_session(archived.id)
    clock.set_to(_NOW)
    return archived.id


@contextmanager
def _sent(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) sent on ``engine`` meanwhile, one at a time."""
    sent: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if not many:
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def _relations(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            yield plan["Relation Name"]
        for value in plan.values():
            yield from _relations(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _relations(item)


def _is_partition(name: str) -> bool:
    return any(name.startswith(f"{table}_") for table in _PARTITIONED)


async def _partitions_planned(engine: AsyncEngine, sent: list[tuple[str, Any]]) -> list[set[str]]:
    """For each statement sent that names a partitioned table, the partitions its plan
    reads or writes."""
    planned = []
    async with engine.connect() as conn:
        for statement, parameters in sent:
            if not any(table in statement for table in _PARTITIONED):
                continue
            if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
                continue
            found = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            plan = found.scalar_one()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            planned.append({name for name in _relations(plan) if _is_partition(name)})
        await conn.rollback()
    return planned


async def _planned_for(
    store: SessionStore, work: Callable[[], Awaitable[object]]
) -> list[set[str]]:
    engine = sql_archive(store).engine
    with _sent(engine) as sent:
        await work()
    return await _partitions_planned(engine, sent)


async def test_every_statement_on_an_active_session_is_planned_over_the_active_partitions(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    await _with_months(store, clock)
    session = await store.create_session(["AAPL"], "equity", user_id="u")
    sid = session.id

    async def two_queries() -> None:  # more than one query: the locked write
        changes = SessionChanges(
            new_queries=[QueryRecord(query_type="price", parameters={}) for _ in range(2)]
        )
        await store.backend.apply(sid, changes, now=store.now(), limits=store.limits)

    async def update_state() -> None:
        found = await store.get_session(sid)
        assert found is not None
        found.state.context["k"] = "v"
        await store.update_session(sid, found)

    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_session(sid),
        lambda: store.get_user_session(sid, "u"),
        lambda: store.append_query(sid, QueryRecord(query_type="price", parameters={})),
        two_queries,
        update_state,
        lambda: store.get_history(sid),
        lambda: store.extend_session(sid, 1),
        lambda: store.close_session(sid),
    ]
    seen: set[str] = set()
    for operation in operations:
        planned = await _planned_for(store, operation)
        assert planned, "no statement on the sessions explained"
        for partitions in planned:
            assert partitions <= _ACTIVE
            seen |= partitions
    assert seen == _ACTIVE


async def test_an_unpruned_read_would_plan_every_month(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    """The measure above counts: a statement naming no month plans every partition."""
    store, clock = pg_store
    await _with_months(store, clock)
    engine = sql_archive(store).engine
    sent = [("SELECT id FROM sessions WHERE id = $1::UUID", (uuid4(),))]
    (partitions,) = await _partitions_planned(engine, sent)
    months = {f"sessions_y2030m{month:02d}" for month in range(1, 7)}
    assert partitions >= {"sessions_active", "sessions_default", *months}


async def test_an_archived_session_is_read_with_its_queries_from_its_month(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    archived = await _with_months(store, clock)

    planned = await _planned_for(store, lambda: store.get_session(archived))

    found = await store.get_session(archived)
    assert found is not None and found.is_archived
    assert len(found.state.history.queries) == 1
    active_read, archive_read, queries_read = planned
    assert active_read == {"sessions_active"}
    assert "sessions_active" not in archive_read  # the months (no locator: each of them)
    assert queries_read == {"session_queries_y2030m02"}
    history = await store.get_history(archived)
    assert len(history.queries) == 1


async def test_a_write_to_an_archived_session_is_refused_as_archived(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    archived = await _with_months(store, clock)
    with pytest.raises(SessionArchivedError):
        await store.append_query(archived, QueryRecord(query_type="price", parameters={}))
    with pytest.raises(SessionArchivedError):
        await store.extend_session(archived, 1)
    found = await store.get_session(archived)
    assert found is not None and found.state.history.total_queries == 1


async def test_an_unknown_id_and_another_owners_session_cost_the_same_reads(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    archived = await _with_months(store, clock)
    active = await store.create_session(["AAPL"], "equity", user_id="u")
    engine = sql_archive(store).engine
    reads = []
    for sid in (uuid4(), active.id, archived):
        with _sent(engine) as sent:
            assert await store.get_user_session(sid, "someone else") is None
        reads.append(len(sent))
    assert reads[0] == reads[1] == reads[2] == 2
    assert await store.get_session(uuid4()) is None


async def test_the_archive_of_redis_reads_an_archived_session_in_one_lookup(
    tmp_path: Path,
) -> None:
    """Redis holds the active sessions: the SQL archive holds none, so a read by id looks
    in every partition at once, as before, not in the (empty) active one first."""
    store = SessionStore(await settings_for("redis+postgres", tmp_path))
    await store.initialize()
    try:
        session = await store.create_session(["AAPL"], "equity", user_id="u")
        await store.append_query(session.id, QueryRecord(query_type="price", parameters={}))
        assert await store.archive_session(session.id)
        engine = sql_archive(store).engine
        with _sent(engine) as sent:
            found = await store.get_session(session.id)
            history = await store.get_history(session.id)
        assert found is not None and found.is_archived
        assert len(found.state.history.queries) == len(history.queries) == 1
        assert len(sent) == 4  # each read: the row, then its queries (one statement each)
        with _sent(engine) as sent:
            assert await store.get_session(uuid4()) is None
        assert len(sent) == 1
    finally:
        await store.shutdown()


async def test_the_active_partition_is_named_by_the_active_month_inline(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    """Inline text (no bound parameter, which the planner of a generic plan could not
    prune on) that says :data:`ACTIVE_MONTH`."""
    dialect = sql_archive(pg_store[0]).engine.dialect
    condition = in_active_partition(sessions_table).compile(dialect=dialect)
    assert str(condition) == f"sessions.archive_month = '{ACTIVE_MONTH}'"
    assert not condition.params
