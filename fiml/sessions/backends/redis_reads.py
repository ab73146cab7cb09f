"""What the Redis backend reads: sessions, pages of history, listings and counts.

A session is read by one run of the READ script, a consistent snapshot in one round trip;
a listing merges the shards of the user's index (:mod:`~fiml.sessions.backends.
redis_indexes`) and reads each session's meta hash, dropping index entries whose session
is gone; a count checks candidates from an index on their meta hashes, in pipelined
batches, never scanning the keyspace.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from fiml.core.errors import CorruptRecordError
from fiml.sessions.backends.base import ListCursor
from fiml.sessions.backends.fields import by_name
from fiml.sessions.backends.redis_codec import (
    SUMMARY_META_NAMES,
    pairs,
    session_from_parts,
    stored_micros,
    summary_values,
    to_micros,
)
from fiml.sessions.backends.redis_indexes import RedisIndexes
from fiml.sessions.backends.summaries import skip_corrupt, summaries_from_values
from fiml.sessions.events import SessionEvent, events_from_json
from fiml.sessions.models import QueryRecord, Session, SessionSummary, queries_from_json, utcnow
from fiml.sessions.quarantine import UNDECODABLE, failure_reason

__all__ = ["RedisReads"]

_COUNT_BATCH = 1000
_OWNER_FIELD = by_name["user_id"].meta_name
_ACTIVE_FIELDS = tuple(
    by_name[name].meta_name for name in ("session_type", "created_at", "expires_at", "closed_at")
)


class RedisReads(RedisIndexes):
    """The reads of :class:`~fiml.sessions.backends.redis.RedisBackend`."""

    async def load(
        self, session_id: UUID, *, recent_queries: int | None, owner: str | None = None
    ) -> Session | None:
        """A session and its latest ``recent_queries`` queries, read by one run of the READ
        script: one snapshot, one round trip. With an ``owner``, the script answers "none"
        for another owner's session after the one HGET that finds no session at an unknown
        id.

        A MULTI/EXEC pipeline of the same plain reads costs Redis about a third of the
        script's 20-25 µs, but redis-py's pipeline takes five event-loop turns where a
        script call takes two: measured on this machine, 955 µs against 623 µs per read.
        """
        first = 0 if recent_queries is None else -recent_queries or None
        keys = self.keys.session_keys(session_id)
        start = "" if first is None else first
        reply = await self._run(self._read, keys, (start, "", _OWNER_FIELD, owner or ""))
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

    async def load_events(self, session_id: UUID, *, after: int, limit: int) -> list[SessionEvent]:
        """Events ``after+1 ..`` of a session's timeline, at most ``limit`` (one LRANGE)."""
        key = self.keys.session_keys(session_id).events
        raw = await self._call("LRANGE", key, after, after + limit - 1)
        try:
            return events_from_json(raw, first_seq=after + 1)
        except UNDECODABLE as exc:
            raise CorruptRecordError("redis", session_id, failure_reason(exc)) from None

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
        after = None if cursor is None else (str(cursor.session_id), to_micros(cursor.created_at))
        rows: list[dict[str, Any]] = []
        exhausted = False
        while len(rows) < limit and not exhausted:
            entries, exhausted = await self._user_page(user_id, after, limit - len(rows))
            if not entries:
                break
            rows += await self._summary_rows(user_id, [member for member, _ in entries])
            after = entries[-1]
        return summaries_from_values(rows, utcnow())

    async def _summary_rows(self, user_id: str, members: list[str]) -> list[dict[str, Any]]:
        """Listing rows from the sessions' meta hashes; drops index entries of vanished ones."""
        metas = await self._pipeline(
            [("HMGET", self.keys.meta_key(m), *SUMMARY_META_NAMES) for m in members]
        )
        found = dict(zip(members, metas, strict=True))
        gone = [
            ("ZREM", self.keys.user_index(user_id, m), m)
            for m, meta in found.items()
            if not any(meta)
        ]
        if gone:
            await self._pipeline(gone)
        return decoded_summaries(found.items())

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
            members = await self._user_members(user_id, low)
        else:
            members = await self._expiry_members()
        now_us = to_micros(now)
        since_us = None if created_since is None else to_micros(created_since)
        count = 0
        for start in range(0, len(members), _COUNT_BATCH):
            batch = members[start : start + _COUNT_BATCH]
            metas = await self._pipeline(
                [("HMGET", self.keys.meta_key(m), *_ACTIVE_FIELDS) for m in batch]
            )
            for kind, created, expires, closed in metas:
                expires_us, created_us = stored_micros(expires), stored_micros(created)
                count += bool(
                    expires_us is not None
                    and expires_us > now_us
                    and not closed
                    and (session_type is None or kind == session_type)
                    and (since_us is None or (created_us is not None and created_us >= since_us))
                )
        return count


def decoded_summaries(metas: Iterable[tuple[str, list[str | None]]]) -> list[dict[str, Any]]:
    """The summary values of each (session id, meta fields) pair whose session exists; a
    session whose fields do not decode is logged and left out: one damaged session never
    hides its owner's others."""
    rows = []
    for member, meta in metas:
        if not any(meta):
            continue
        try:
            rows.append(summary_values(member, meta))
        except UNDECODABLE as exc:
            skip_corrupt(member, exc)
    return rows
