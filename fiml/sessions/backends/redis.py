"""Redis backend for active sessions (redis-py asyncio); the archive is SQL.

The keyspace lives in :mod:`fiml.sessions.backends.redis_keys`, the Lua scripts in
``lua/*.lua`` beside it; every Redis command goes through redis-py's client
(:mod:`~fiml.sessions.backends.redis_commands`). Every write to a session is one EVALSHA
of a script that touches only that session's hash-tagged keys, so it is atomic and Redis
Cluster-safe: it makes every check of :mod:`~fiml.sessions.backends.rules` before changing
anything, then appends the new queries (O(1) each: RPUSH, SADD, HINCRBY), merges state keys
(HSET/HDEL) and bumps the version (its protocol: :mod:`~fiml.sessions.backends.redis_apply`).
Reading a session is one run of the READ script, a consistent snapshot that loads only the
recent queries asked for (:mod:`~fiml.sessions.backends.redis_reads`).
:mod:`~fiml.sessions.backends.redis_codec` converts sessions to and from the hashes.

The user index and the expiry index are keys of their own (sharded by session, see
:mod:`~fiml.sessions.backends.redis_indexes`), updated by separate commands, so a process
may die between an index update and the session write. The order of the commands keeps
both indexes safe to trust (on a Redis Cluster, where the index shards and the session sit
on different masters, a pipeline's commands to different masters run in no set order, so
the index updates there get a round trip of their own before the session's script):

- The expiry index holds, for every live session, a score *no later* than its real expiry;
  cleanup (:meth:`RedisBackend.expired_ids`) re-reads the real expiry from the session
  before returning an id. A session is therefore added to both indexes *before* it is
  created, and a write that may bring expiry forward (close, end now, a new expiry)
  lowers the index entry (``ZADD XX LT``) *before* its script runs. A write that pushes
  expiry later (extend) leaves the entry early; cleanup finds it, sees the session is not
  due, and re-scores it, to at most ``now + session_archive_grace_hours / 2``, so that even
  an entry left late by a race with a concurrent close comes due again soon.
- Entries whose session is gone (a crash between deleting the keys and the ``ZREM``, or
  before a create's script ran) are dropped where they are met: by cleanup for the expiry
  index, by listing for the user index.
- Archival is export -> SQL upsert -> delete. The export script *freezes* the session
  (it refuses writes from then on), so no write can land between the copy and the delete;
  re-running any step after a crash neither loses nor duplicates anything.

Redis never removes a session by itself: its keys carry no TTL, because a TTL would delete
a session the archive never received whenever archival is held up longer than the TTL (the
archive down, no scheduler running). A session leaves Redis only once it is in the archive.
A session that cannot be archived (a value the archive refuses, a record that does not
decode) stays, and the store quarantines it (:mod:`fiml.sessions.quarantine`). Keys written
with a TTL by earlier versions are made persistent once, when a backend first starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from redis.asyncio import RedisCluster

from fiml.core.config import Settings
from fiml.core.errors import InvalidInputError
from fiml.core.redis_client import redis_client
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.base import HistoryCounters, SessionChanges, WriteLimits
from fiml.sessions.backends.redis_apply import (
    apply_args,
    counters_or_refusal,
    earliest_expiry,
    unindexed,
)
from fiml.sessions.backends.redis_codec import create_args, to_micros
from fiml.sessions.backends.redis_commands import Command
from fiml.sessions.backends.redis_export import RedisExport, parsed_id
from fiml.sessions.backends.redis_search import RedisSearch, session_assets
from fiml.sessions.events import SessionEvent
from fiml.sessions.models import Session

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["RedisBackend"]

_LEGACY_TTL_BATCH = 500


class RedisBackend(RedisSearch, RedisExport):
    """Active sessions in Redis; see the module docstring for the keyspace and its safety."""

    name = "redis"

    def __init__(
        self,
        client: RedisClient,
        *,
        archive_grace: timedelta,
        timeout: float,
        keys: rk.RedisKeyspace,
        max_calls: int | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        owns_client: bool = True,
    ) -> None:
        self.redis = client
        self.keys = keys
        self._rescore_horizon = archive_grace / 2
        self._timeout = timeout
        self._owns_client = owns_client
        self._cluster = isinstance(client, RedisCluster)
        self._gate = asyncio.Semaphore(max_calls) if self._cluster and max_calls else None
        self._wait_replicas = wait_replicas
        self._wait_milliseconds = max(1, round(wait_timeout * 1000))
        self._create = client.register_script(rk.CREATE)
        self._apply = client.register_script(rk.APPLY)
        self._read = client.register_script(rk.READ)
        self._freezing_read = client.register_script(rk.FREEZING_READ)
        self._remove = client.register_script(rk.REMOVE)

    @classmethod
    def on_client(
        cls, client: RedisClient, *, settings: Settings, owns_client: bool = False
    ) -> RedisBackend:
        """A backend on ``client`` (the process's one, see :func:`~fiml.core.redis_client.
        open_redis`) with the settings' timeout, grace, key prefix, index shards and
        replica wait; closing the backend leaves a lent client (``owns_client`` false) to
        its owner."""
        grace = timedelta(hours=settings.session_archive_grace_hours)
        keys = rk.RedisKeyspace(settings.redis_key_prefix, settings.redis_index_shards)
        return cls(
            client,
            archive_grace=grace,
            timeout=settings.redis_timeout_seconds,
            keys=keys,
            max_calls=settings.redis_max_connections,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout=settings.redis_wait_timeout_seconds,
            owns_client=owns_client,
        )

    @classmethod
    def from_url(cls, url: str, *, settings: Settings) -> RedisBackend:
        """A backend on a :func:`~fiml.core.redis_client.redis_client` of its own (a
        ``RedisCluster`` with ``settings.redis_cluster``)."""
        return cls.on_client(redis_client(url, settings), settings=settings, owns_client=True)

    async def initialize(self) -> None:
        """Check that Redis answers, load the scripts, make keys that earlier versions
        wrote with a TTL persistent (once per Redis database), and move index entries of
        earlier versions or shard counts into the shards."""
        await self._call("PING")
        await self._load_scripts()
        if not await self._call("EXISTS", self.keys.layout_marker):
            await self._persist_legacy_keys()
        await self._move_indexes()

    async def _persist_legacy_keys(self) -> None:
        """PERSIST the keys of every indexed session: a walk of the expiry index, which
        holds every live session, done once; running it twice, or concurrently, is harmless."""
        for index in (self.keys.legacy_expiry_index, *self.keys.expiry_shards()):
            await self._persist_keys_of(index)
        await self._call("SET", self.keys.layout_marker, "1")

    async def _persist_keys_of(self, index: str) -> None:
        start = 0
        while True:
            members = await self._call("ZRANGE", index, start, start + _LEGACY_TTL_BATCH - 1)
            commands: list[Command] = [
                ("PERSIST", key)
                for member in members
                if parsed_id(member) is not None
                for key in self.keys.session_keys(member)
            ]
            if commands:
                await self._pipeline(commands)
            if len(members) < _LEGACY_TTL_BATCH:
                return
            start += _LEGACY_TTL_BATCH

    async def close(self) -> None:
        """Close the client (and its pools) when the backend owns it (``from_url``)."""
        if self._owns_client:
            await self.redis.aclose()

    async def insert(self, session: Session, events: Sequence[SessionEvent] = ()) -> None:
        """Index the session first, then create its keys and first timeline events (see
        the module docstring)."""
        sid = str(session.id)
        commands: list[Command] = [
            ("ZADD", self.keys.expiry_index(sid), "LT", to_micros(session.expires_at), sid)
        ]
        assets = session_assets(session)
        if session.user_id is not None:
            created = to_micros(session.created_at)
            user_index = self.keys.user_index(session.user_id, sid)
            commands.append(("ZADD", user_index, "NX", created, sid))
            commands += self.asset_index_adds(session.user_id, created, sid, assets)
        args = create_args(session, events, assets)
        create = (self._create, self.keys.session_keys(sid), args)
        if self._cluster:  # the indexes first, whatever master holds them (module docstring)
            await self._pipeline(commands, durable=True)
            results = await self._pipeline((), [create], durable=True)
        else:
            results = await self._pipeline(commands, [create], durable=True)
        if not results[-1]:
            raise InvalidInputError("session_id", sid, "a session with this id already exists")

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply one write in one script run; see the module docstring for the index."""
        earliest = earliest_expiry(changes, now)
        sid = str(session_id)
        if earliest is not None:
            lower = ("ZADD", self.keys.expiry_index(sid), "XX", "LT", to_micros(earliest), sid)
            await self._pipeline([lower], durable=True)
        keys = self.keys.session_keys(session_id)
        args = apply_args(changes, now, limits)
        if self._wait_replicas:
            (reply,) = await self._pipeline((), [(self._apply, keys, args)], durable=True)
        else:
            reply = await self._run(self._apply, keys, args)
        counters = counters_or_refusal(reply, session_id, changes, now=now, limits=limits)
        user, created, assets = unindexed(reply)
        if assets and user:  # a session without a user is never searched
            await self.index_assets(session_id, user, created, assets)
        return counters

    async def delete(self, session_id: UUID) -> bool:
        """Delete a session's keys, then its index entries."""
        return await self.remove_archived([session_id]) == 1
