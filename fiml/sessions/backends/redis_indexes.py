"""The sharded user and expiry indexes of the Redis backend: merged reads, and moving entries.

Each index is split into ``keys.shards`` sorted sets by a hash of the session id
(:meth:`~fiml.sessions.backends.redis_keys.RedisKeyspace.shard_of`), each under a hash tag
of its own, so that on a Redis Cluster no single slot, hence no single master, holds a
whole index and takes every listing and cleanup. A page of a user's sessions is read from
every shard of that user in one pipelined round trip (redis-py sends each command to its
shard's master) and merged: each shard gives at most a page, so a page costs
O(shards x page), never the size of the index. Cleanup walks the expiry shards one after
another (:meth:`~fiml.sessions.backends.redis_export.RedisExport.expired_ids`).

Indexes written before the shards (one ``<p>:expiry`` and one ``<p>:user:<id>:sessions``
per user), and shards of an earlier shard count, are moved into the current shards by
:meth:`RedisIndexes._move_indexes`: when a backend starts, and whenever cleanup finds the
old expiry index again (a process of an earlier version still writing during a rolling
upgrade). Every session is in the expiry index, so walking it finds each session, and its
meta hash names its user: no keyspace scan. Each entry is added to its shard before it is
removed from where it was, so a crash midway loses nothing and the next move finishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fiml.sessions.backends.fields import by_name
from fiml.sessions.backends.redis_commands import Command, RedisCommands
from fiml.sessions.backends.redis_keys import RedisKeyspace

__all__ = ["RedisIndexes", "score_pairs"]

_MOVE_BATCH = 500
_OWNER_FIELD = by_name["user_id"].meta_name
_CREATED_FIELD = by_name["created_at"].meta_name

Entry = tuple[str, int]
"""(member, score) of an index: a session id and integer microseconds."""


def score_pairs(reply: list[Any]) -> list[Entry]:
    """(member, score) of a WITHSCORES reply: pairs in RESP3, one flat list in RESP2.
    Scores are integer microseconds below 2**53, so the doubles hold them exactly."""
    if reply and isinstance(reply[0], list):
        return [(member, int(float(score))) for member, score in reply]
    return [(m, int(float(s))) for m, s in zip(reply[::2], reply[1::2], strict=True)]


def _newest_first(entry: Entry) -> tuple[int, str]:
    return (entry[1], entry[0])


def _user_shard_of(keys: RedisKeyspace, shard: int) -> Callable[[str], str]:
    """Shard ``shard`` of a user's index, as a function of the user."""
    return lambda user: keys.user_shard(user, shard)


class RedisIndexes(RedisCommands):
    """Reads and moves of the sharded indexes, for the Redis backend."""

    async def _user_page(
        self, user_id: str, after: Entry | None, count: int
    ) -> tuple[list[Entry], bool]:
        """Up to ``count`` entries of a user's index strictly after ``after`` (a
        ``(member, score)``), newest first (equal scores: member descending), merged over
        the user's shards, and whether the index has no more after them.

        Each shard gives its first ``count`` entries after ``after`` (skipping, by offset,
        entries that tie with it). Only entries at or above every unfinished shard's last
        one can be told to be the next ones, so a page with fewer reads again."""
        found: list[Entry] = []
        cursor = after
        while len(found) < count:
            entries, done = await self._merged_after(user_id, cursor, count - len(found))
            found += entries
            if done or not entries:
                return found, True
            cursor = entries[-1]
        return found, False

    async def _merged_after(
        self, user_id: str, after: Entry | None, count: int
    ) -> tuple[list[Entry], bool]:
        """One merge of the shards (see ``_user_page``): the entries known to come next,
        and whether every shard ran out."""
        top = "+inf" if after is None else after[1]
        offsets = dict.fromkeys(self.keys.user_shards(user_id), 0)
        fetched: dict[str, list[Entry]] = {}
        unfinished: set[str] = set()
        while offsets:
            keys = list(offsets)
            replies = await self._pipeline(
                [
                    (
                        "ZREVRANGEBYSCORE",
                        key,
                        top,
                        "-inf",
                        "WITHSCORES",
                        "LIMIT",
                        offsets[key],
                        count,
                    )
                    for key in keys
                ]
            )
            further: dict[str, int] = {}
            for key, reply in zip(keys, replies, strict=True):
                batch = score_pairs(reply)
                entries = [
                    e for e in batch if after is None or _newest_first(e) < _newest_first(after)
                ]
                fetched[key] = entries
                unfinished.discard(key)
                if len(batch) == count:
                    unfinished.add(key)
                    if not entries:  # the whole batch ties with the cursor: look further
                        further[key] = offsets[key] + count
            offsets = further
        merged = sorted((e for es in fetched.values() for e in es), key=_newest_first, reverse=True)
        lasts = [fetched[key][-1] for key in unfinished if fetched[key]]
        if lasts:
            floor = _newest_first(max(lasts, key=_newest_first))
            merged = [e for e in merged if _newest_first(e) >= floor]
        return merged[:count], not unfinished and len(merged) <= count

    async def _user_members(self, user_id: str, low: int | str) -> list[str]:
        """Every session id in a user's index created at ``low`` or later."""
        replies = await self._pipeline(
            [("ZRANGEBYSCORE", key, low, "+inf") for key in self.keys.user_shards(user_id)]
        )
        return [member for reply in replies for member in reply]

    async def _expiry_members(self) -> list[str]:
        """Every session id in the expiry index."""
        replies = await self._pipeline(
            [("ZRANGE", key, 0, -1) for key in self.keys.expiry_shards()]
        )
        return [member for reply in replies for member in reply]

    async def _move_indexes(self) -> None:
        """Move the unsharded indexes of earlier versions, and the shards of an earlier
        shard count, into the current shards; then record the shard count."""
        keys = self.keys
        stored, legacy = await self._pipeline(
            [("GET", keys.shard_count_marker), ("EXISTS", keys.legacy_expiry_index)]
        )
        if legacy:
            await self._move_from(keys.legacy_expiry_index, keys.legacy_user_index)
        if stored is not None and int(stored) != keys.shards:
            for shard in range(int(stored)):
                await self._move_from(keys.expiry_shard(shard), _user_shard_of(keys, shard))
        if stored is None or int(stored) != keys.shards:
            await self._call("SET", keys.shard_count_marker, keys.shards)

    async def _move_from(self, expiry_key: str, user_key: Callable[[str], str]) -> None:
        """Move every entry of one expiry index (and of the user index ``user_key(user)``
        beside it) that does not belong there into its shard: added there first, then
        removed here."""
        start = 0
        while True:
            batch = score_pairs(
                await self._call("ZRANGE", expiry_key, start, start + _MOVE_BATCH - 1, "WITHSCORES")
            )
            moving = [(m, s) for m, s in batch if self.keys.expiry_index(m) != expiry_key]
            start += len(batch) - len(moving)  # those staying keep their place
            if moving:
                await self._move_entries(expiry_key, user_key, moving)
            if len(batch) < _MOVE_BATCH:
                return

    async def _move_entries(
        self, expiry_key: str, user_key: Callable[[str], str], moving: list[Entry]
    ) -> None:
        metas = await self._pipeline(
            [("HMGET", self.keys.meta_key(m), _OWNER_FIELD, _CREATED_FIELD) for m, _ in moving]
        )
        added: list[Command] = []
        removed: list[Command] = []
        for (member, score), (user, created) in zip(moving, metas, strict=True):
            added.append(("ZADD", self.keys.expiry_index(member), "LT", score, member))
            if user is not None and created is not None:
                added.append(("ZADD", self.keys.user_index(user, member), "NX", created, member))
                removed.append(("ZREM", user_key(user), member))
        removed.append(("ZREM", expiry_key, *(m for m, _ in moving)))
        await self._pipeline(added)
        await self._pipeline(removed)
