"""PostgreSQL's archive partitioned by month (revision 0004): the migration moves an
existing archive into partitions without losing a row and goes back; retention drops
whole months and deletes the boundary month row by row, keeping quarantined sessions; the
jobs create partitions ahead; a write racing the archival of its session is refused as
archived, not failed by the row's move to another partition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from alembic import command
from sqlalchemy import Connection, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.core.config import Settings
from fiml.core.errors import SessionArchivedError
from fiml.sessions import SessionStore
from fiml.sessions.backends.sql_partitions import move_to_archive, partition_name
from fiml.sessions.backends.sql_rows import Q, S
from fiml.sessions.db import create_engine
from fiml.sessions.jobs import run_retention
from fiml.sessions.models import QueryRecord, utcnow
from fiml.sessions.schema import alembic_config, drop_schema, upgrade_schema
from tests.clock import MovableClock
from tests.conftest import require_postgres, reset_postgres, sql_archive

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    url = await require_postgres()
    engine = create_engine(url)
    await drop_schema(engine)
    try:
        yield engine
    finally:
        await drop_schema(engine)
        await engine.dispose()


def _session_row(session_id: UUID, archived_at: datetime | None) -> dict[str, Any]:
    created = datetime(2025, 11, 3, tzinfo=UTC)
    return {
        "id": session_id,
        "user_id": "u",
        "session_type": "equity",
        "assets": ["AAPL"],
        "tags": [],
        "created_at": created,
        "expires_at": created + timedelta(hours=1),
        "last_accessed_at": created,
        "closed_at": None,
        "archived_at": archived_at,
        "version": 1,
        "total_queries": 2,
        "cache_hits": 0,
        "query_type_counts": {"price": 2},
        "first_query_at": created,
        "last_query_at": created,
        "context": {},
        "preferences": {},
        "intermediate_results": {},
        "metadata": {},
    }


def _query_rows(session_id: UUID) -> list[dict[str, Any]]:
    stamp = datetime(2025, 11, 3, tzinfo=UTC)
    return [
        {
            "session_id": session_id,
            "seq": seq,
            "id": uuid4(),
            "timestamp": stamp,
            "query_type": "price",
            "parameters": {"n": seq},
            "result_summary": None,
            "execution_time_ms": 1.0,
            "cache_hit": False,
        }
        for seq in (1, 2)
    ]


def _migrate(connection: Connection, direction: str, revision: str) -> None:
    config = alembic_config(connection)
    getattr(command, direction)(config, revision)


async def _placed(engine: AsyncEngine, table: str) -> dict[str, str]:
    """Each row's session id (as text) -> the partition (table) holding it."""
    column = "id" if table == "sessions" else "session_id"
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(f"SELECT DISTINCT {column}::text, tableoid::regclass::text FROM {table}")
        )
        return {session: where for session, where in rows.all()}


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        sessions = (await conn.execute(text("SELECT count(*) FROM sessions"))).scalar_one()
        queries = (await conn.execute(text("SELECT count(*) FROM session_queries"))).scalar_one()
    return sessions, queries


async def _foreign_keys_to_sessions(engine: AsyncEngine) -> set[str]:
    """The foreign keys of session_events (0006) and session_search_terms (0005) to
    sessions, which 0004 drops on PostgreSQL."""
    async with engine.connect() as conn:
        keys = await conn.execute(
            text(
                "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid IN "
                "('session_events'::regclass, 'session_search_terms'::regclass)"
            )
        )
        return set(keys.scalars())


_TO_SESSIONS = {
    "fk_session_events_session_id_sessions",
    "fk_session_search_terms_session_id_sessions",
}


async def test_the_migration_moves_every_row_into_its_partition_and_back(
    pg_engine: AsyncEngine,
) -> None:
    await upgrade_schema(pg_engine, "0003")
    active, november, march = uuid4(), uuid4(), uuid4()
    archived = {
        active: None,
        november: datetime(2025, 11, 30, 23, 59, tzinfo=UTC),
        march: datetime(2026, 3, 1, tzinfo=UTC),  # the first instant of its month
    }
    async with pg_engine.begin() as conn:
        await conn.execute(insert(S), [_session_row(i, at) for i, at in archived.items()])
        await conn.execute(insert(Q), [row for i in archived for row in _query_rows(i)])
    before = await _counts(pg_engine)

    async with pg_engine.begin() as conn:
        await conn.run_sync(_migrate, "upgrade", "0004")

    assert await _counts(pg_engine) == before == (3, 6)
    expected = {
        str(active): "sessions_active",
        str(november): partition_name("sessions", datetime(2025, 11, 1, tzinfo=UTC)),
        str(march): partition_name("sessions", datetime(2026, 3, 1, tzinfo=UTC)),
    }
    assert await _placed(pg_engine, "sessions") == expected
    assert await _placed(pg_engine, "session_queries") == {
        session: where.replace("sessions", "session_queries", 1)
        for session, where in expected.items()
    }
    store = SessionStore(Settings(database_url=str(pg_engine.url.render_as_string(False))))
    async with store:
        found = await store.get_session(november)
        assert found is not None and found.archived_at == archived[november]
        assert [q.parameters for q in found.state.history.queries] == [{"n": 1}, {"n": 2}]

    assert await _foreign_keys_to_sessions(pg_engine) == set()
    async with pg_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO session_events (session_id, seq, kind, at, data) "
                "VALUES (:sid, 1, 'query', now(), '{}')"
            ),
            {"sid": november},
        )
        await conn.run_sync(_migrate, "downgrade", "0005")
    assert await _foreign_keys_to_sessions(pg_engine) == _TO_SESSIONS  # restored, event kept
    async with pg_engine.connect() as conn:
        events = await conn.execute(text("SELECT session_id FROM session_events"))
        assert list(events.scalars()) == [november]

    async with pg_engine.begin() as conn:
        await conn.run_sync(_migrate, "downgrade", "0003")

    assert await _counts(pg_engine) == before
    async with pg_engine.connect() as conn:
        kinds = await conn.execute(
            text("SELECT relname, relkind::text FROM pg_class WHERE relname LIKE 'session%'")
        )
        relkinds = {str(name): str(kind) for name, kind in kinds.all()}
        keys = await conn.execute(
            text("SELECT conname FROM pg_constraint WHERE conrelid = 'session_queries'::regclass")
        )
        assert "fk_session_queries_session_id_sessions" in set(keys.scalars())
    assert (relkinds["sessions"], relkinds["session_queries"]) == ("r", "r")
    assert not any(name.startswith("sessions_") for name in relkinds if name != "sessions_pkey")


async def test_a_migration_that_would_lose_a_row_changes_nothing(pg_engine: AsyncEngine) -> None:
    """A query row whose session is gone (no foreign key stops it here, added by hand)
    cannot be placed: the migration refuses and leaves 0003's tables as they were."""
    await upgrade_schema(pg_engine, "0003")
    kept = uuid4()
    async with pg_engine.begin() as conn:
        await conn.execute(insert(S), [_session_row(kept, None)])
        await conn.execute(
            text(
                "ALTER TABLE session_queries DROP CONSTRAINT fk_session_queries_session_id_sessions"
            )
        )
        await conn.execute(insert(Q), _query_rows(uuid4()))

    with pytest.raises(RuntimeError, match="session_queries: 0 rows copied of 2"):
        async with pg_engine.begin() as conn:
            await conn.run_sync(_migrate, "upgrade", "0004")

    assert await _counts(pg_engine) == (1, 2)
    async with pg_engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == "0003"


@pytest.fixture
async def pg_store() -> AsyncIterator[tuple[SessionStore, MovableClock]]:
    url = await require_postgres()
    await reset_postgres(url)
    clock = MovableClock()
    store = SessionStore(Settings(database_url=url, redis_url=None), clock=clock)
    await store.initialize()
    try:
        yield store, clock
    finally:
        await store.shutdown()


def _set_clock(clock: MovableClock, moment: datetime) -> None:
    clock.offset = moment - utcnow()


async def _archived_at(store: SessionStore, clock: MovableClock, moment: datetime) -> UUID:
    _set_clock(clock, moment)
    session = await store.create_session(["AAPL"], "equity", user_id="u")
    await store.append_query(session.id, QueryRecord(query_type="price", parameters={}))
    assert await store.archive_session(session.id)
    return session.id


async def _partitions(store: SessionStore) -> set[str]:
    async with sql_archive(store).engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'sessions'::regclass"
            )
        )
        return set(found.scalars())


async def _query_count(store: SessionStore, ids: list[UUID]) -> int:
    async with sql_archive(store).engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM session_queries WHERE session_id = ANY(:ids)"),
            {"ids": ids},
        )
        return int(found.scalar_one())


async def _event_count(store: SessionStore, ids: list[UUID]) -> int:
    async with sql_archive(store).engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM session_events WHERE session_id = ANY(:ids)"),
            {"ids": ids},
        )
        return int(found.scalar_one())


async def _term_count(store: SessionStore, ids: list[UUID]) -> int:
    async with sql_archive(store).engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM session_search_terms WHERE session_id = ANY(:ids)"),
            {"ids": ids},
        )
        return int(found.scalar_one())


async def test_retention_drops_whole_months_and_deletes_the_boundary_by_rows(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    _set_clock(clock, datetime(2030, 1, 5, tzinfo=UTC))
    assert (await run_retention(store, retention_days=3650)).partitions_created == 6
    assert (await run_retention(store, retention_days=3650)).partitions_created == 0
    january = [await _archived_at(store, clock, datetime(2030, 1, d, tzinfo=UTC)) for d in (6, 7)]
    early_march = await _archived_at(store, clock, datetime(2030, 3, 5, tzinfo=UTC))
    late_march = await _archived_at(store, clock, datetime(2030, 3, 20, tzinfo=UTC))
    _set_clock(clock, datetime(2030, 3, 25, tzinfo=UTC))

    result = await run_retention(store, retention_days=10)  # cutoff: 15 March

    assert result.deleted == 3
    partitions = await _partitions(store)
    assert "sessions_y2030m01" not in partitions and "sessions_y2030m02" not in partitions
    assert {"sessions_y2030m03", "sessions_y2030m04", "sessions_y2030m05"} <= partitions
    gone = [*january, early_march]
    assert [await store.get_session(i) for i in gone] == [None] * 3
    assert await _query_count(store, gone) == 0
    # Dropped months take their sessions' timelines along (no foreign key cascades here).
    assert await _event_count(store, gone) == 0
    assert await _term_count(store, gone) == 0  # their search terms too
    kept = await store.get_session(late_march)
    assert kept is not None and len(kept.state.history.queries) == 1
    assert await _event_count(store, [late_march]) == 1
    assert await _term_count(store, [late_march]) > 0


async def test_retention_keeps_a_month_holding_a_quarantined_session(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    _set_clock(clock, datetime(2030, 1, 5, tzinfo=UTC))
    await store.prepare_archive()
    quarantined, other = [
        await _archived_at(store, clock, datetime(2030, 1, d, tzinfo=UTC)) for d in (6, 7)
    ]
    now = datetime(2030, 1, 7, tzinfo=UTC)
    await sql_archive(store).quarantine({quarantined: ("u", "test: cannot be moved")}, now=now)
    _set_clock(clock, datetime(2030, 3, 25, tzinfo=UTC))

    assert (await run_retention(store, retention_days=10)).deleted == 1

    assert "sessions_y2030m01" in await _partitions(store)
    assert await store.get_session(other) is None
    assert await store.get_session(quarantined) is not None


async def test_a_write_racing_the_archival_of_its_session_is_refused_as_archived(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    """The writer waits on the row lock while archival moves the row to its month's
    partition; PostgreSQL then fails the writer's lock (SQLSTATE 40001), and the write,
    run again, finds the session archived."""
    store, _ = pg_store
    session = await store.create_session(["AAPL"], "equity", user_id="u")
    engine = sql_archive(store).engine
    async with engine.connect() as archiver:
        await archiver.execute(
            text("UPDATE sessions SET archived_at = now() WHERE id = :id"), {"id": session.id}
        )
        await archiver.run_sync(move_to_archive, [session.id], utcnow())
        write = asyncio.create_task(
            store.append_query(session.id, QueryRecord(query_type="price", parameters={}))
        )
        # The watcher on an engine of its own: the store's pool may have no connection to
        # spare while the archiver and the write hold theirs.
        watching = create_engine(engine.url.render_as_string(hide_password=False))
        try:
            async with watching.connect() as watcher:
                for _ in range(3000):  # a bound on the wait, not a timing: a loaded machine
                    if write.done():  # what it did instead of waiting, in the failure
                        pytest.fail(f"the write did not wait for the archiver: {write!r}")
                    waiting = await watcher.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database()"
                        )
                    )
                    if waiting.scalar_one():
                        break
                    await asyncio.sleep(0.01)
                else:
                    pytest.fail("the write never waited for the archiver's lock")
        finally:
            await watching.dispose()
        await archiver.commit()

    with pytest.raises(SessionArchivedError):
        await write


async def test_a_month_archived_before_its_partition_is_moved_into_it_when_created(
    pg_store: tuple[SessionStore, MovableClock],
) -> None:
    store, clock = pg_store
    _set_clock(clock, datetime(2030, 1, 5, tzinfo=UTC))
    await store.prepare_archive()  # January to March
    late = await _archived_at(store, clock, datetime(2030, 6, 10, tzinfo=UTC))
    assert (await _placed(sql_archive(store).engine, "sessions"))[str(late)] == "sessions_default"

    assert await store.prepare_archive() == 6  # June to August, both tables

    engine = sql_archive(store).engine
    assert (await _placed(engine, "sessions"))[str(late)] == "sessions_y2030m06"
    assert (await _placed(engine, "session_queries"))[str(late)] == "session_queries_y2030m06"
    found = await store.get_session(late)
    assert found is not None and len(found.state.history.queries) == 1
