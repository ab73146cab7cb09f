"""The Redis side of timelines: the events list is one of the session's hash-tagged keys,
written by the APPLY script with the change, and leaves Redis with the session once the
archive holds its copy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from sqlalchemy import func, select

from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.redis import RedisBackend
from fiml.sessions.db import EventRow
from tests.conftest import settings_for, sql_archive


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """Redis + PostgreSQL, both emptied."""
    return await settings_for("redis+postgres", tmp_path)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SessionStore]:
    async with SessionStore(settings) as session_store:
        assert isinstance(session_store.backend, RedisBackend)
        yield session_store


def test_the_events_list_shares_the_sessions_hash_tag() -> None:
    keys = rk.RedisKeyspace("p").session_keys("abc")
    assert keys.events == "p:s:{abc}:events"
    # KEYS[8], after the seven state keys, so that the scripts' earlier KEYS keep their places
    assert keys[7] == keys.events
    assert keys[8] == keys.assets  # the search's, after the timeline's


async def test_events_are_written_with_the_change_and_leave_with_the_session(
    store: SessionStore, raw: redis.Redis
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    await store.append_query(session.id, QueryRecord(query_type="price"), context={"last": 1})
    key = rk.RedisKeyspace().session_keys(session.id).events
    assert await raw.llen(key) == 2  # the context change and the query, one script run
    assert await store.archive_session(session.id)
    assert await raw.exists(key) == 0
    rows = select(func.count()).select_from(EventRow).where(EventRow.session_id == session.id)
    async with sql_archive(store).engine.connect() as conn:
        assert (await conn.execute(rows)).scalar_one() == 2
    assert [e.kind for e in (await store.get_timeline(session.id)).events] == [
        "context",
        "query",
    ]


async def test_deleting_a_session_deletes_its_timeline(
    store: SessionStore, raw: redis.Redis
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    await store.update_state(session.id, preferences={"a": 1})
    key = rk.RedisKeyspace().session_keys(session.id).events
    assert await raw.llen(key) == 1
    assert await store.delete_session(session.id)
    assert await raw.exists(key) == 0
