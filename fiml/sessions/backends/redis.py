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

The user index and the expiry index are keys of their own, updated by separate commands,
so a process may die between an index update and the session write. The order of the
commands keeps both indexes safe to trust:

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

from datetime import datetime, timedelta
from uuid import UUID

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fiml.core.config import Settings
from fiml.core.errors import InvalidInputError
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.base import HistoryCounters, SessionChanges, WriteLimits
from fiml.sessions.backends.redis_apply import apply_args, counters_or_refusal, earliest_expiry
from fiml.sessions.backends.redis_codec import create_args, to_micros
from fiml.sessions.backends.redis_commands import Command
from fiml.sessions.backends.redis_export import RedisExport, parsed_id
from fiml.sessions.backends.redis_reads import RedisReads
from fiml.sessions.models import Session

__all__ = ["POOL_WAIT_SECONDS", "RedisBackend", "redis_client"]

_LEGACY_TTL_BATCH = 500
POOL_WAIT_SECONDS = 60.0
"""How long a call waits for a free connection when all of them are busy, before it fails."""


def redis_client(
    url: str, *, max_connections: int, timeout: float, pool_wait: float = POOL_WAIT_SECONDS
) -> Redis:
    """A redis-py client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) replying
    with decoded strings, on a blocking pool of up to ``max_connections``: a call that finds
    them all busy waits (``pool_wait`` seconds at most) instead of failing, so a burst of
    writers queues rather than errors. Connecting is bounded by ``timeout``
    (``socket_connect_timeout``); :class:`RedisBackend` bounds each call as a whole by it.
    redis-py's ``socket_timeout`` is off (redis-py 8 sets 5 s by default): with it, every
    send runs in a task of its own (``asyncio.wait_for``), an event-loop turn more per
    command (PING: 3 turns instead of 2, a MULTI/EXEC read 6 instead of 5), which took
    22-34% more time per call in an interleaved run on a loaded two-core machine.

    Commands are never retried (``Retry`` with no retries): a command whose reply was lost
    may have run, and running a write again is not harmless (an extension applied twice, a
    create that finds its own session and reports it taken). Nor is a health-check interval
    set: its PING on a dead connection only fails without a retry. What keeps a connection
    left over from before a Redis restart from failing a call is the pool's check before it
    hands a connection out (``ensure_connection``): one the server closed, or that holds
    unread data, is reconnected. redis-py skips that check when Redis's maintenance
    notifications are on, which is its default on RESP3 (redis-py 8 speaks RESP3 unless
    told otherwise), so the client speaks RESP2 (``protocol=2``; a ``protocol`` in the URL
    overrides it, at that cost). A command that fails or is cancelled drops its connection,
    so no late reply reaches a later call.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait,
        socket_connect_timeout=timeout,
        socket_timeout=None,  # the backend bounds each call (see above)
        retry=Retry(NoBackoff(), 0),
        protocol=2,
        decode_responses=True,
    )
    return Redis.from_pool(pool)


class RedisBackend(RedisReads, RedisExport):
    """Active sessions in Redis; see the module docstring for the keyspace and its safety."""

    name = "redis"

    def __init__(self, client: Redis, *, archive_grace: timedelta, timeout: float) -> None:
        self.redis = client
        self._rescore_horizon = archive_grace / 2
        self._timeout = timeout
        self._create = client.register_script(rk.CREATE)
        self._apply = client.register_script(rk.APPLY)
        self._read = client.register_script(rk.READ)
        self._remove = client.register_script(rk.REMOVE)

    @classmethod
    def from_url(cls, url: str, *, settings: Settings) -> RedisBackend:
        """A backend on :func:`redis_client` with the settings' pool size and timeout."""
        timeout = settings.redis_timeout_seconds
        client = redis_client(url, max_connections=settings.redis_max_connections, timeout=timeout)
        grace = timedelta(hours=settings.session_archive_grace_hours)
        return cls(client, archive_grace=grace, timeout=timeout)

    async def initialize(self) -> None:
        """Check that Redis answers, load the scripts, and make keys that earlier versions
        wrote with a TTL persistent (once per Redis database)."""
        await self._call("PING")
        await self._load_scripts()
        if not await self._call("EXISTS", rk.LAYOUT_MARKER):
            await self._persist_legacy_keys()

    async def _persist_legacy_keys(self) -> None:
        """PERSIST the keys of every indexed session: a walk of the expiry index, which
        holds every live session, done once; running it twice, or concurrently, is harmless."""
        start = 0
        while True:
            members = await self._call(
                "ZRANGE", rk.EXPIRY_INDEX, start, start + _LEGACY_TTL_BATCH - 1
            )
            commands: list[Command] = [
                ("PERSIST", key)
                for member in members
                if parsed_id(member) is not None
                for key in rk.session_keys(member)
            ]
            if commands:
                await self._pipeline(commands)
            if len(members) < _LEGACY_TTL_BATCH:
                break
            start += _LEGACY_TTL_BATCH
        await self._call("SET", rk.LAYOUT_MARKER, "1")

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self.redis.aclose()

    async def insert(self, session: Session) -> None:
        """Index the session first, then create its keys (see the module docstring)."""
        sid = str(session.id)
        commands: list[Command] = [
            ("ZADD", rk.EXPIRY_INDEX, "LT", to_micros(session.expires_at), sid)
        ]
        if session.user_id is not None:
            created = to_micros(session.created_at)
            commands.append(("ZADD", rk.user_index(session.user_id), "NX", created, sid))
        create = (self._create, rk.session_keys(sid), create_args(session))
        results = await self._pipeline(commands, [create])
        if not results[-1]:
            raise InvalidInputError("session_id", sid, "a session with this id already exists")

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply one write in one script run; see the module docstring for the index."""
        earliest = earliest_expiry(changes, now)
        if earliest is not None:
            await self._call(
                "ZADD", rk.EXPIRY_INDEX, "XX", "LT", to_micros(earliest), str(session_id)
            )
        keys = rk.session_keys(session_id)
        args = apply_args(changes, now, limits)
        reply = await self._run(self._apply, keys, args)
        return counters_or_refusal(reply, session_id, changes, now=now, limits=limits)

    async def delete(self, session_id: UUID) -> bool:
        """Delete a session's keys, then its index entries."""
        return await self.remove_archived([session_id]) == 1
