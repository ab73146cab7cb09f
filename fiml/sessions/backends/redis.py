"""Redis backend for active sessions (redis-py asyncio); the archive is SQL.

The keyspace lives in :mod:`fiml.sessions.backends.redis_keys`, the Lua scripts in
``lua/*.lua`` beside it; every Redis command goes through redis-py's client. Every
write to a session is one EVALSHA of a script that touches only that session's hash-tagged
keys, so it is atomic and Redis Cluster-safe: it checks existence, frozen/closed/expired,
the expected version, the query limit and the TTL before changing anything, then appends
the new queries (O(1) each: RPUSH, SADD, HINCRBY), merges state keys (HSET/HDEL) and bumps
the version. Reading a session is one run of the READ script, a consistent snapshot that
loads only the recent queries asked for.
:mod:`~fiml.sessions.backends.redis_codec` converts sessions to and from the hashes and
the scripts' arguments.

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

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fiml.core.config import Settings
from fiml.core.errors import (
    ContextValueError,
    CorruptRecordError,
    InvalidInputError,
    InvalidTTLError,
    QueryLimitExceededError,
    SessionArchivedError,
    SessionClosedError,
    SessionConflictError,
    SessionExpiredError,
    SessionNotFoundError,
    StorageUnavailableError,
)
from fiml.core.redis_client import redis_client
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.base import (
    ExportedSessions,
    HistoryCounters,
    ListCursor,
    SessionChanges,
    WriteLimits,
    list_size_error,
)
from fiml.sessions.backends.redis_codec import (
    SummaryRow,
    apply_args,
    create_args,
    earliest_expiry,
    from_micros,
    pairs,
    session_from_parts,
    summary_row,
    to_micros,
)
from fiml.sessions.backends.sql import new_expiry, summaries_from_rows
from fiml.sessions.models import (
    MAX_STATE_KEYS,
    STATE_SECTIONS,
    QueryRecord,
    Session,
    SessionSummary,
    queries_from_json,
    utcnow,
)
from fiml.sessions.quarantine import UNDECODABLE, failure_reason

__all__ = ["RedisBackend"]

Command = tuple[Any, ...]
_COUNT_BATCH = 1000
_ACTIVE_FIELDS = ("type", "created_at", "expires_at", "closed_at")
_NOT_WRITABLE = {
    "archived": SessionArchivedError,
    "closed": SessionClosedError,
    "expired": SessionExpiredError,
}


def _score_pairs(reply: list[Any]) -> list[tuple[str, int]]:
    """(member, score) of a WITHSCORES reply: pairs in RESP3, one flat list in RESP2.
    Scores are integer microseconds below 2**53, so the doubles hold them exactly."""
    if reply and isinstance(reply[0], list):
        return [(member, int(float(score))) for member, score in reply]
    return [(m, int(float(s))) for m, s in zip(reply[::2], reply[1::2], strict=True)]


_FAULTS = (RedisConnectionError, RedisTimeoutError, OSError)
"""What redis-py raises when Redis cannot be reached or does not answer in time (a busy
loading Redis, a full pool: ConnectionError subclasses); an error reply is none of these."""
_LEGACY_TTL_BATCH = 500

logger = logging.getLogger("fiml.sessions.redis")


def _exported_session(session_id: UUID, reply: list[Any]) -> Session:
    """A session from the READ script's reply, for archival (no baseline: never written back)."""
    meta, queries, *sections = reply
    return session_from_parts(
        session_id, pairs(meta), queries, [pairs(s) for s in sections], baseline=False
    )


def _parsed_id(member: str) -> UUID | None:
    try:
        return UUID(member)
    except ValueError:
        return None


def _micros_or_none(value: str | None) -> int | None:
    """A stored time, None where it is absent or damaged."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class RedisBackend:
    """Active sessions in Redis; see the module docstring for the keyspace and its safety."""

    name = "redis"

    def __init__(
        self, client: Redis, *, archive_grace: timedelta, timeout: float, keys: rk.RedisKeyspace
    ) -> None:
        self.redis = client
        self.keys = keys
        self._rescore_horizon = archive_grace / 2
        self._timeout = timeout
        self._create = client.register_script(rk.CREATE)
        self._apply = client.register_script(rk.APPLY)
        self._read = client.register_script(rk.READ)
        self._remove = client.register_script(rk.REMOVE)

    @classmethod
    def on_client(cls, client: Redis, *, settings: Settings) -> RedisBackend:
        """A backend on ``client`` (the process's one, see :func:`~fiml.core.redis_client.
        open_redis`) with the settings' timeout, grace and key prefix; closing the backend
        closes the client, and a client on a pool lent by ``open_redis`` leaves the pool open."""
        grace = timedelta(hours=settings.session_archive_grace_hours)
        keys = rk.RedisKeyspace(settings.redis_key_prefix)
        return cls(client, archive_grace=grace, timeout=settings.redis_timeout_seconds, keys=keys)

    @classmethod
    def from_url(cls, url: str, *, settings: Settings) -> RedisBackend:
        """A backend on a :func:`~fiml.core.redis_client.redis_client` of its own."""
        return cls.on_client(redis_client(url, settings), settings=settings)

    async def initialize(self) -> None:
        """Check that Redis answers, load the scripts, and make keys that earlier versions
        wrote with a TTL persistent (once per Redis database)."""
        await self._call("PING")
        await self._load_scripts()
        if not await self._call("EXISTS", self.keys.layout_marker):
            await self._persist_legacy_keys()

    async def _persist_legacy_keys(self) -> None:
        """PERSIST the keys of every indexed session: a walk of the expiry index, which
        holds every live session, done once; running it twice, or concurrently, is harmless."""
        start = 0
        while True:
            members = await self._call(
                "ZRANGE", self.keys.expiry_index, start, start + _LEGACY_TTL_BATCH - 1
            )
            commands: list[Command] = [
                ("PERSIST", key)
                for member in members
                if _parsed_id(member) is not None
                for key in self.keys.session_keys(member)
            ]
            if commands:
                await self._pipeline(commands)
            if len(members) < _LEGACY_TTL_BATCH:
                break
            start += _LEGACY_TTL_BATCH
        await self._call("SET", self.keys.layout_marker, "1")

    async def close(self) -> None:
        """Close the client, and its connection pool when the client owns it (``from_url``)."""
        await self.redis.aclose()

    async def _load_scripts(self) -> None:
        """Load every script ahead of its first call, which then needs no NOSCRIPT round
        trip (each :class:`~redis.commands.core.AsyncScript` loads itself again after one)."""
        scripts = (self._create, self._apply, self._read, self._remove)
        await self._pipeline([("SCRIPT LOAD", script.script) for script in scripts])

    def _unavailable(self, exc: Exception) -> StorageUnavailableError:
        if isinstance(exc, RedisTimeoutError | TimeoutError):
            return StorageUnavailableError("redis", f"no reply within {self._timeout:g} s")
        return StorageUnavailableError("redis", str(exc) or type(exc).__name__)

    async def _call(self, *command: Any) -> Any:
        """One command, its reply (an error reply is raised).

        Each call to Redis, here and below, is bounded as a whole by the timeout: past it,
        the call is cancelled inside redis-py, which drops the connection it was using, so
        the late reply reaches no one."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self.redis.execute_command(*command)  # type: ignore[no-untyped-call]
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call, by EVALSHA (the script loads itself again after a NOSCRIPT)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await script(keys=keys, args=args)
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc

    async def _pipeline(
        self,
        commands: Sequence[Command],
        scripts: Sequence[tuple[AsyncScript, Sequence[str], Sequence[Any]]] = (),
        *,
        transaction: bool = False,
    ) -> list[Any]:
        """``commands``, then the ``scripts`` calls, in one round trip, their replies in
        order; in a MULTI/EXEC transaction if ``transaction``. An error reply is raised
        once every reply is read.

        Scripts go as plain EVALSHA commands by their ``sha``: a script object in a
        redis-py pipeline first asks Redis which scripts it holds (SCRIPT EXISTS, one more
        round trip per call, which made a create take two). ``initialize`` loaded them;
        should Redis have lost them (a restart, SCRIPT FLUSH), they are loaded and the
        whole pipeline is sent once more, which is safe because every command sent along
        with a script here is idempotent (index updates, reads) and a script that met
        NOSCRIPT did not run.
        """
        if not commands and not scripts:
            return []
        calls = [*commands]
        calls += [
            ("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in scripts
        ]
        try:
            return await self._send(calls, transaction=transaction)
        except NoScriptError:
            await self._load_scripts()
            return await self._send(calls, transaction=transaction)

    async def _send(self, commands: Sequence[Command], *, transaction: bool) -> list[Any]:
        try:
            async with (
                asyncio.timeout(self._timeout),
                self.redis.pipeline(transaction=transaction) as pipe,
            ):
                for command in commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc

    async def insert(self, session: Session) -> None:
        """Index the session first, then create its keys (see the module docstring)."""
        sid = str(session.id)
        commands: list[Command] = [
            ("ZADD", self.keys.expiry_index, "LT", to_micros(session.expires_at), sid)
        ]
        if session.user_id is not None:
            created = to_micros(session.created_at)
            commands.append(("ZADD", self.keys.user_index(session.user_id), "NX", created, sid))
        create = (self._create, self.keys.session_keys(sid), create_args(session))
        results = await self._pipeline(commands, [create])
        if not results[-1]:
            raise InvalidInputError("session_id", sid, "a session with this id already exists")

    async def load(self, session_id: UUID, *, recent_queries: int | None) -> Session | None:
        """A session and its latest ``recent_queries`` queries, read by one run of the READ
        script: one snapshot, one round trip.

        A MULTI/EXEC pipeline of the same plain reads costs Redis about a third of the
        script's 20-25 µs, but redis-py's pipeline takes five event-loop turns where a
        script call takes two: measured on this machine, 955 µs against 623 µs per read.
        """
        first = 0 if recent_queries is None else -recent_queries or None
        keys = self.keys.session_keys(session_id)
        reply = await self._run(self._read, keys, ("" if first is None else first, ""))
        if not reply:
            return None
        meta, queries, *sections = reply
        try:
            return session_from_parts(
                session_id, pairs(meta), queries, [pairs(section) for section in sections]
            )
        except UNDECODABLE as exc:
            raise CorruptRecordError("redis", session_id, failure_reason(exc)) from None

    async def load_history(self, session_id: UUID, *, offset: int, limit: int) -> list[QueryRecord]:
        """Queries ``offset+1 .. offset+limit``, oldest first (one LRANGE)."""
        key = self.keys.session_keys(session_id).queries
        raw = await self._call("LRANGE", key, offset, offset + limit - 1)
        try:
            return queries_from_json(raw)
        except UNDECODABLE as exc:
            raise CorruptRecordError("redis", session_id, failure_reason(exc)) from None

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply one write in one script run; see the module docstring for the index."""
        earliest = earliest_expiry(changes, now)
        if earliest is not None:
            await self._call(
                "ZADD", self.keys.expiry_index, "XX", "LT", to_micros(earliest), str(session_id)
            )
        keys = self.keys.session_keys(session_id)
        args = apply_args(changes, now, limits)
        result = await self._run(self._apply, keys, args)
        code = result[0]
        if code == "ok":
            return HistoryCounters(
                total_queries=result[1],
                cache_hits=result[2],
                version=result[3],
                added_queries=result[5],
            )
        raise self._write_error(session_id, changes, now, limits, code, result[1:])

    @staticmethod
    def _write_error(
        session_id: UUID,
        changes: SessionChanges,
        now: datetime,
        limits: WriteLimits,
        code: str,
        detail: list[Any],
    ) -> Exception:
        if code == "not_found":
            return SessionNotFoundError(session_id)
        if code in _NOT_WRITABLE:
            return _NOT_WRITABLE[code](session_id)
        if code == "conflict":
            expected = cast(int, changes.expected_version)
            return SessionConflictError(
                session_id, expected_version=expected, actual_version=int(detail[0])
            )
        if code == "limit":
            return QueryLimitExceededError(session_id, limit=limits.max_queries)
        if code == "list_size":
            return list_size_error(str(detail[0]), int(detail[1]))
        if code == "state_keys":
            section = STATE_SECTIONS[int(detail[0]) - 1]
            return ContextValueError(
                section, int(detail[1]), f"would hold more than {MAX_STATE_KEYS} keys"
            )
        try:
            new_expiry(from_micros(detail[0]), changes, now, limits.max_ttl)
        except InvalidTTLError as exc:
            return exc
        raise RuntimeError(f"unexpected reply from the apply script: {code!r}")

    async def delete(self, session_id: UUID) -> bool:
        """Delete a session's keys, then its index entries."""
        return await self.remove_archived([session_id]) == 1

    async def remove_archived(self, session_ids: Sequence[UUID]) -> int:
        """Delete sessions' keys, then their index entries; returns how many were here."""
        removed = await self._pipeline(
            (), [(self._remove, self.keys.session_keys(sid), ()) for sid in session_ids]
        )
        by_user: dict[str, list[str]] = {}
        for sid, (_existed, user) in zip(session_ids, removed, strict=True):
            if user is not None:
                by_user.setdefault(user, []).append(str(sid))
        commands: list[Command] = [("ZREM", self.keys.expiry_index, *map(str, session_ids))]
        commands += [("ZREM", self.keys.user_index(user), *ids) for user, ids in by_user.items()]
        if session_ids:
            await self._pipeline(commands)
        return sum(existed for existed, _user in removed)

    async def export_sessions(self, session_ids: Sequence[UUID]) -> ExportedSessions:
        """Freeze the sessions (no more writes) and return them with their whole histories;
        one that does not decode is reported with the reason, and stays frozen."""
        replies = await self._pipeline(
            (), [(self._read, self.keys.session_keys(s), (0, "1")) for s in session_ids]
        )
        export = ExportedSessions()
        for sid, reply in zip(session_ids, replies, strict=True):
            if reply is None:
                continue
            if "frozen" not in reply[0][::2]:  # the meta as it was before this freeze
                export.frozen_here.add(sid)
            try:
                export.sessions.append(_exported_session(sid, reply))
            except UNDECODABLE as exc:
                export.unreadable[sid] = failure_reason(exc)
        return export

    async def thaw(self, session_ids: Sequence[UUID]) -> None:
        """Let sessions frozen by a failed archiving take writes again."""
        if session_ids:
            await self._pipeline(
                [("HDEL", self.keys.meta_key(sid), "frozen") for sid in session_ids]
            )

    async def list_user(
        self,
        user_id: str,
        *,
        include_archived: bool,
        limit: int,
        cursor: ListCursor | None,
    ) -> list[SessionSummary]:
        """A page of a user's sessions, newest first (ties: id descending), from the index.

        Redis holds no archived sessions, so ``include_archived`` changes nothing here.
        """
        key = self.keys.user_index(user_id)
        after = None if cursor is None else (to_micros(cursor.created_at), str(cursor.session_id))
        rows: list[SummaryRow] = []
        exhausted = False
        while len(rows) < limit and not exhausted:
            entries, exhausted = await self._index_after(key, after, limit - len(rows))
            if not entries:
                break
            rows += await self._summary_rows(key, [member for member, _ in entries])
            after = (entries[-1][1], entries[-1][0])
        return summaries_from_rows(rows, utcnow())

    async def _index_after(
        self, key: str, after: tuple[int, str] | None, count: int
    ) -> tuple[list[tuple[str, int]], bool]:
        """Up to ``count`` (member, score) entries strictly after ``after``, newest first
        (equal scores come in member order, descending), and whether the index ran out."""
        top = "+inf" if after is None else after[0]
        offset = 0
        while True:
            reply = await self._call(
                "ZREVRANGEBYSCORE", key, top, "-inf", "WITHSCORES", "LIMIT", offset, count
            )
            batch = _score_pairs(reply)
            entries = [(m, s) for m, s in batch if after is None or (s, m) < after]
            if entries or len(batch) < count:
                return entries, len(batch) < count
            offset += count

    async def _summary_rows(self, key: str, members: list[str]) -> list[SummaryRow]:
        """Listing rows from the sessions' meta hashes; drops index entries of vanished ones."""
        fields = rk.META_FIELDS_FOR_SUMMARY
        metas = await self._pipeline([("HMGET", self.keys.meta_key(m), *fields) for m in members])
        found = dict(zip(members, metas, strict=True))
        gone = [member for member, meta in found.items() if not any(meta)]
        if gone:
            await self._call("ZREM", key, *gone)
        rows = []
        for member, meta in found.items():
            if not any(meta):
                continue
            try:
                rows.append(summary_row(member, meta))
            except UNDECODABLE as exc:  # one damaged session never hides its owner's others
                logger.warning(
                    "listing skips a corrupt session",
                    extra={
                        "event": "session.corrupt",
                        "session_id": member,
                        "reason": failure_reason(exc),
                    },
                )
        return rows

    async def count_active(
        self,
        *,
        now: datetime,
        user_id: str | None = None,
        session_type: str | None = None,
        created_since: datetime | None = None,
    ) -> int:
        """Running sessions matching the filters (for analytics).

        Candidates come from the user's index (from ``created_since`` on) or, for all
        users, from the expiry index; each is checked on its meta hash, in pipelined
        batches, so the cost is the number of candidates, never a keyspace scan.
        """
        if user_id is not None:
            low = "-inf" if created_since is None else to_micros(created_since)
            members = await self._call("ZRANGEBYSCORE", self.keys.user_index(user_id), low, "+inf")
        else:
            members = await self._call("ZRANGE", self.keys.expiry_index, 0, -1)
        now_us = to_micros(now)
        since_us = None if created_since is None else to_micros(created_since)
        count = 0
        for start in range(0, len(members), _COUNT_BATCH):
            batch = members[start : start + _COUNT_BATCH]
            metas = await self._pipeline(
                [("HMGET", self.keys.meta_key(m), *_ACTIVE_FIELDS) for m in batch]
            )
            for kind, created, expires, closed in metas:
                expires_us, created_us = _micros_or_none(expires), _micros_or_none(created)
                count += bool(
                    expires_us is not None
                    and expires_us > now_us
                    and not closed
                    and (session_type is None or kind == session_type)
                    and (since_us is None or (created_us is not None and created_us >= since_us))
                )
        return count

    async def expired_ids(self, *, now: datetime, limit: int, skip: int = 0) -> list[UUID]:
        """Sessions due for archival, from the expiry index, each re-checked on its meta.

        A session whose stored expiry is damaged counts as due, so that archival meets it
        and quarantines it; an index entry that is no session id at all is dropped.
        """
        now_us = to_micros(now)
        due: list[UUID] = []
        while len(due) < limit:
            wanted = limit - len(due)
            batch = await self._call(
                "ZRANGEBYSCORE",
                self.keys.expiry_index,
                "-inf",
                now_us,
                "LIMIT",
                skip + len(due),
                wanted,
            )
            if not batch:
                break
            expiries = await self._pipeline(
                [("HGET", self.keys.meta_key(m), "expires_at") for m in batch]
            )
            for member, expires in zip(batch, expiries, strict=True):
                sid, expires_us = _parsed_id(member), _micros_or_none(expires)
                if sid is not None and expires is not None and (expires_us or 0) <= now_us:
                    due.append(sid)
            await self._repair_expiry_index(batch, expiries, now)
            if len(batch) < wanted:
                break
        return list(dict.fromkeys(due))

    async def _repair_expiry_index(
        self, members: list[str], expiries: list[str | None], now: datetime
    ) -> None:
        """Drop entries of vanished sessions and entries that are no session id; re-score
        those not yet due (capped, see above)."""
        now_us = to_micros(now)
        cap = to_micros(now + self._rescore_horizon)
        bogus = [m for m in members if _parsed_id(m) is None]
        gone = [m for m, e in zip(members, expiries, strict=True) if e is None] + bogus
        if bogus:
            logger.warning(
                "expiry index entries that are no session id dropped",
                extra={"event": "index.corrupt", "count": len(bogus)},
            )
        later = {
            m: min(expires_us, cap)
            for m, e in zip(members, expiries, strict=True)
            if (expires_us := _micros_or_none(e)) is not None
            and expires_us > now_us
            and _parsed_id(m) is not None
        }
        commands: list[Command] = []
        if gone:
            commands.append(("ZREM", self.keys.expiry_index, *gone))
        if later:
            items = [x for m, score in later.items() for x in (score, m)]
            commands.append(("ZADD", self.keys.expiry_index, "XX", *items))
        await self._pipeline(commands)
