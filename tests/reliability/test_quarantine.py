"""Sessions archival cannot move are quarantined, never lost, and never stop the others.

The poison is planted behind the store's back (the store refuses such values on the way
in): a NUL character PostgreSQL cannot hold, a history entry that is not JSON, a meta field
that does not decode, an index entry that is no session id, a SQLite row whose JSON is
damaged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
import redis.asyncio as redis
from sqlalchemy.engine import make_url

from fiml.core.errors import CorruptRecordError
from fiml.sessions import ALL_QUERIES, SessionStore
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.jobs import run_retention
from fiml.sessions.models import SessionStatus
from tests.conftest import settings_for, sql_archive
from tests.reliability.archive_checks import archived_count, due_sessions, sessions_in_redis

QUERIES = 2
KEYS = rk.RedisKeyspace()
"""The keys of the tests' deployment (the default key prefix)."""


async def plant_nul(raw: redis.Redis, session_id: UUID) -> None:
    """A context value holding NUL: Redis and SQLite keep it, PostgreSQL's JSONB cannot."""
    await raw.hset(KEYS.session_keys(session_id).context, "note", '"before\\u0000after"')


async def corrupt_history(raw: redis.Redis, session_id: UUID) -> None:
    await raw.lset(KEYS.session_keys(session_id).queries, 0, "{not json")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SessionStore]:
    settings = await settings_for("redis+postgres", tmp_path)
    async with SessionStore(settings) as session_store:
        yield session_store


async def test_two_poisoned_sessions_of_500_are_quarantined_and_none_is_lost(
    store: SessionStore, raw: redis.Redis
) -> None:
    ids = await due_sessions(store, 500, queries=QUERIES)
    nul, broken = ids[17], ids[333]
    await plant_nul(raw, nul)
    await corrupt_history(raw, broken)

    first = await store.cleanup_expired_sessions()  # one batch of 1000 holds all 500
    assert (first.archived, first.failed, first.quarantined) == (498, 0, 2)
    assert first.metrics_recorded == 498
    assert await sessions_in_redis(raw) == {nul, broken}  # nothing lost: the two stay
    archive = sql_archive(store)
    assert await archive.count_sessions(archived=True) == 498

    quarantined = {q.session_id: q for q in await store.list_quarantined()}
    assert set(quarantined) == {nul, broken}
    assert "refused" in quarantined[nul].reason
    assert "does not decode" in quarantined[broken].reason
    assert "before" not in quarantined[nul].reason  # no stored value is quoted
    assert {q.attempts for q in quarantined.values()} == {1}

    second = await store.cleanup_expired_sessions()  # retried, and still kept
    assert (second.archived, second.failed, second.quarantined) == (0, 0, 2)
    assert {q.attempts for q in await store.list_quarantined()} == {2}
    assert await sessions_in_redis(raw) == {nul, broken}

    # Readable as far as they can be read.
    held = await store.get_session(nul, history_limit=ALL_QUERIES)
    assert held is not None and held.status is SessionStatus.EXPIRED
    assert held.state.context["note"] == "before\x00after"
    assert len(held.state.history.queries) == QUERIES
    light = await store.get_session(broken, history_limit=0)
    assert light is not None and light.state.history.total_queries == QUERIES
    with pytest.raises(CorruptRecordError) as caught:
        await store.get_session(broken, history_limit=ALL_QUERIES)
    assert caught.value.session_id == str(broken)
    assert {s.id for s in await store.list_user_sessions(light.user_id or "")} >= {broken}

    # Repaired, a quarantined session is archived by the next run and leaves the quarantine.
    await raw.hset(KEYS.session_keys(nul).context, "note", '"repaired"')
    third = await store.cleanup_expired_sessions()
    assert (third.archived, third.quarantined) == (1, 1)
    assert [q.session_id for q in await store.list_quarantined()] == [broken]

    # An operator's delete ends the quarantine.
    assert await store.delete_session(broken)
    assert await store.list_quarantined() == []
    assert await sessions_in_redis(raw) == set()


async def test_an_index_entry_that_is_no_session_id_is_dropped_not_fatal(
    store: SessionStore, raw: redis.Redis
) -> None:
    ids = await due_sessions(store, 30, queries=1)
    await raw.zadd(KEYS.expiry_index("not-a-uuid"), {"not-a-uuid": 1})
    await raw.hset(KEYS.meta_key("not-a-uuid"), mapping={"expires_at": "1", "type": "equity"})

    report = await store.cleanup_expired_sessions()

    assert (report.archived, report.failed, report.quarantined) == (30, 0, 0)
    assert await raw.zscore(KEYS.expiry_index("not-a-uuid"), "not-a-uuid") is None
    assert await raw.exists(KEYS.meta_key("not-a-uuid"))  # not a session: not ours to delete
    await raw.delete(KEYS.meta_key("not-a-uuid"))
    assert await sessions_in_redis(raw) == set()
    assert await sql_archive(store).count_sessions(archived=True) == len(ids)


async def test_a_corrupt_meta_field_hides_only_its_session(
    store: SessionStore, raw: redis.Redis
) -> None:
    ids = await due_sessions(store, 6, queries=1, users=1)
    broken = ids[2]
    await raw.hset(KEYS.meta_key(broken), "assets", "[not json")
    await raw.hset(KEYS.meta_key(ids[4]), "expires_at", "soon")

    listed = await store.list_user_sessions("u0")
    assert {s.id for s in listed} == set(ids) - {broken, ids[4]}
    report = await store.cleanup_expired_sessions()
    assert (report.archived, report.quarantined) == (4, 2)
    with pytest.raises(CorruptRecordError):
        await store.get_session(broken)


async def test_postgres_refusing_nul_quarantines_on_a_real_archive_outage_fails(
    store: SessionStore, raw: redis.Redis
) -> None:
    """The archive refusing one value is that session's problem; the others move."""
    ids = await due_sessions(store, 8, queries=1)
    await plant_nul(raw, ids[0])
    report = await store.cleanup_expired_sessions(batch_size=3)
    assert (report.archived, report.failed, report.quarantined) == (7, 0, 1)
    assert await sessions_in_redis(raw) == {ids[0]}


async def test_a_damaged_sqlite_row_is_archived_kept_past_retention_and_reported(
    tmp_path: Path,
) -> None:
    settings = await settings_for("sqlite", tmp_path)
    async with SessionStore(settings) as store:
        ids = await due_sessions(store, 5, queries=1, users=1)
        database = make_url(settings.database_url).database
        assert database is not None
        with sqlite3.connect(database) as db:
            db.execute("UPDATE sessions SET assets = '[not json' WHERE id = ?", (ids[1].hex,))

        assert {s.id for s in await store.list_user_sessions("u0")} == set(ids) - {ids[1]}
        report = await store.cleanup_expired_sessions()
        assert (report.archived, report.failed, report.quarantined) == (5, 0, 0)
        assert report.metrics_recorded == 4
        assert [q.session_id for q in await store.list_quarantined()] == [ids[1]]

        assert (await run_retention(store, retention_days=0)).deleted == 4
        with pytest.raises(CorruptRecordError):
            await store.get_session(ids[1])  # still there, for an operator to look at
        assert await archived_count(sql_archive(store).engine) == 1
