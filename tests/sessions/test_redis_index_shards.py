"""The sharded indexes on single Redis: data written by earlier versions (one unsharded
expiry index, one index per user) or under another shard count keeps working."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as redis
from pydantic import ValidationError

from fiml.core.config import Settings
from fiml.sessions import SessionStore
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.models import SessionStatus
from tests.conftest import settings_for
from tests.reliability.archive_checks import due_sessions

KEYS = rk.RedisKeyspace()


async def unshard(raw: redis.Redis, keys: rk.RedisKeyspace, users: dict[str, str]) -> None:
    """Rewrite the indexes as versions before the shards kept them (``users``: session id
    -> user id), and forget the shard count."""
    for shard in range(keys.shards):
        expiry = cast(
            list[tuple[str, float]],
            await raw.zrange(keys.expiry_shard(shard), 0, -1, withscores=True),
        )
        if expiry:
            await raw.zadd(keys.legacy_expiry_index, dict(expiry))
        await raw.delete(keys.expiry_shard(shard))
        for user in set(users.values()):
            entries = await raw.zrange(keys.user_shard(user, shard), 0, -1, withscores=True)
            if entries:
                await raw.zadd(
                    keys.legacy_user_index(user), dict(cast(list[tuple[str, float]], entries))
                )
            await raw.delete(keys.user_shard(user, shard))
    await raw.delete(keys.shard_count_marker)


async def all_listed(store: SessionStore, user: str) -> list[str]:
    ids, cursor = [], None
    while True:
        page = await store.list_user_sessions_page(user, limit=7, cursor=cursor)
        ids += [str(s.id) for s in page.sessions]
        if (cursor := page.next_cursor) is None:
            return ids


async def test_unsharded_indexes_of_an_earlier_version_move_into_the_shards(
    tmp_path: Path, raw: redis.Redis
) -> None:
    settings = await settings_for("redis+postgres", tmp_path)
    async with SessionStore(settings) as store:
        live = [await store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(20)]
        due = await due_sessions(store, 15, queries=1, users=2)
        before = await all_listed(store, "u1")
    users = {str(s.id): "u1" for s in live}
    await unshard(raw, KEYS, {**users, **{str(d): f"u{i % 2}" for i, d in enumerate(due)}})
    assert await raw.exists(KEYS.legacy_expiry_index, KEYS.legacy_user_index("u1")) == 2

    async with SessionStore(settings) as store:
        assert await all_listed(store, "u1") == before
        assert (await store.cleanup_expired_sessions()).archived == 15
        assert await store.backend.count_active(now=store.now()) == 20
    assert await raw.exists(KEYS.legacy_expiry_index) == 0
    assert await raw.exists(KEYS.legacy_user_index("u0"), KEYS.legacy_user_index("u1")) == 0
    assert await raw.get(KEYS.shard_count_marker) == str(KEYS.shards)


async def test_an_unsharded_entry_written_while_running_is_found_by_cleanup(
    tmp_path: Path, raw: redis.Redis
) -> None:
    """A process of an earlier version still writing during a rolling upgrade."""
    settings = await settings_for("redis+postgres", tmp_path)
    async with SessionStore(settings) as store:
        (sid,) = await due_sessions(store, 1, queries=1, users=1)
        await unshard(raw, KEYS, {str(sid): "u0"})
        assert (await store.cleanup_expired_sessions()).archived == 1
        archived = await store.get_session(sid)
        assert archived is not None and archived.status is SessionStatus.ARCHIVED
    assert await raw.exists(KEYS.legacy_expiry_index) == 0


async def test_a_new_shard_count_reshards_at_start(tmp_path: Path, raw: redis.Redis) -> None:
    few = await settings_for("redis+postgres", tmp_path, redis_index_shards=3)
    async with SessionStore(few) as store:
        live = [await store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(25)]
        due = await due_sessions(store, 10, queries=1, users=1)
        before = await all_listed(store, "u1")
    more = Settings(**{**few.model_dump(), "redis_index_shards": 16})
    async with SessionStore(more) as store:
        assert await all_listed(store, "u1") == before
        assert (await store.cleanup_expired_sessions()).archived == 10
    sixteen = rk.RedisKeyspace(shards=16)
    assert await raw.get(sixteen.shard_count_marker) == "16"
    for session in live:
        sid = str(session.id)
        assert await raw.zscore(sixteen.expiry_index(sid), sid) is not None
        assert await raw.zscore(sixteen.user_index("u1", sid), sid) is not None
    assert len(due) == 10


def test_cluster_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="database 0 only"):
        Settings(redis_url="redis://127.0.0.1:7100/14", redis_cluster=True)
    with pytest.raises(ValidationError, match="redis_index_shards"):
        Settings(redis_index_shards=-1)
    assert Settings().redis_index_shards == 1
    assert Settings(redis_url="redis://127.0.0.1:7100", redis_cluster=True).redis_index_shards == 16
    assert Settings(redis_cluster=True, redis_index_shards=4).redis_index_shards == 4
    with pytest.raises(ValidationError, match="redis_wait_replicas"):
        Settings(redis_wait_replicas=-1)
    assert Settings(redis_url="redis://127.0.0.1:7100", redis_cluster=True).redis_cluster
