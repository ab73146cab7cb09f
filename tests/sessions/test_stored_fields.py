"""The session's stored fields are declared once (``backends.fields``); the tiers follow.

The ``sessions`` table is declared in SQLAlchemy's terms, as its migrations are: these
tests hold it to the declaration, column by column, and check that every field survives
the trip through the declaration's own conversions and through the Redis meta hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import redis.asyncio as redis
from sqlalchemy import Integer, String, Table, Uuid

from fiml.sessions import QueryRecord, Session, SessionStore
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.fields import FIELDS, META_FIELDS, Kind, session_fields, values_of
from fiml.sessions.db import JsonType, SessionRecord, UTCDateTime
from fiml.sessions.models import session_from_store, utcnow
from tests.conftest import settings_for

SESSIONS = cast(Table, SessionRecord.__table__)
COLUMN_TYPES = {
    Kind.ID: Uuid,
    Kind.TEXT: String,
    Kind.LABELS: JsonType,
    Kind.TIME: UTCDateTime,
    Kind.COUNT: Integer,
    Kind.COUNTS: JsonType,
    Kind.SECTION: JsonType,
}


def a_session() -> Session:
    session = Session(type="crypto", user_id="fields", assets=["BTC"], tags=["t"])
    session.add_query(QueryRecord(query_type="price", cache_hit=True))
    session.state.context["k"] = {"v": [1]}
    session.state.metadata["m"] = "x"
    session.closed_at = utcnow()
    return session


def test_the_sessions_table_holds_exactly_the_declared_fields() -> None:
    assert [column.name for column in SESSIONS.columns] == [field.name for field in FIELDS]
    for field in FIELDS:
        column = SESSIONS.c[field.name]
        assert isinstance(column.type, COLUMN_TYPES[field.kind]), field.name
        assert column.nullable == field.optional, field.name


def test_every_declared_field_round_trips_through_its_values() -> None:
    session = a_session()
    values = values_of(session)
    assert set(values) == {field.name for field in FIELDS}
    again = session_from_store(session_fields(values, session.state.history.queries))
    assert again.model_dump() == session.model_dump()


async def test_the_redis_meta_hash_holds_the_declared_meta_fields(
    tmp_path: Path, raw: redis.Redis
) -> None:
    settings = await settings_for("redis+postgres", tmp_path)
    session = a_session()
    async with SessionStore(settings) as store:
        await store.backend.insert(session)
        read = await store.backend.load(session.id, recent_queries=None)
    meta = await raw.hgetall(rk.RedisKeyspace().meta_key(session.id))
    declared = {field.meta_name for field in META_FIELDS}
    assert set(meta) == declared | {rk.QUERY_TYPE_PREFIX + "price"}
    assert read is not None and read.model_dump() == session.model_dump()
