"""What the Redis backend does for archival: export, remove, and find what is due.

Archival is export -> SQL upsert -> remove. The export freezes each session (the READ
script with its freeze flag), so that it refuses writes until it is removed and nothing
written after the copy can be lost; should archiving fail, the exporter thaws what it
froze. Cleanup finds due sessions through the expiry index, shard after shard, re-checking
each on its meta hash and repairing the index as it goes (see
:mod:`~fiml.sessions.backends.redis`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from fiml.sessions.backends.base import ExportedSessions
from fiml.sessions.backends.redis_codec import (
    pairs,
    session_from_parts,
    stored_micros,
    to_micros,
)
from fiml.sessions.backends.redis_commands import Command
from fiml.sessions.backends.redis_indexes import RedisIndexes
from fiml.sessions.events import events_from_json
from fiml.sessions.models import Session
from fiml.sessions.quarantine import UNDECODABLE, failure_reason

__all__ = ["RedisExport", "parsed_id"]

logger = logging.getLogger("fiml.sessions.redis")


def _exported_session(session_id: UUID, reply: list[Any]) -> Session:
    """A session from the READ script's reply, for archival (no baseline: never written back)."""
    meta, queries, *sections = reply
    return session_from_parts(
        session_id, pairs(meta), queries, [pairs(s) for s in sections], baseline=False
    )


def parsed_id(member: str) -> UUID | None:
    """The session id an index member names; None for a member that is no session id."""
    try:
        return UUID(member)
    except ValueError:
        return None


class RedisExport(RedisIndexes):
    """Archival's side of :class:`~fiml.sessions.backends.redis.RedisBackend`."""

    _rescore_horizon: timedelta

    async def remove_archived(self, session_ids: Sequence[UUID]) -> int:
        """Delete sessions' keys, then their index entries; returns how many were here."""
        removed = await self._pipeline(
            (), [(self._remove, self.keys.session_keys(sid), ()) for sid in session_ids]
        )
        by_key: dict[str, list[str]] = {}
        for sid, (_existed, user, *assets) in zip(session_ids, removed, strict=True):
            by_key.setdefault(self.keys.expiry_index(sid), []).append(str(sid))
            if user:
                by_key.setdefault(self.keys.user_index(user, sid), []).append(str(sid))
                for asset in assets:
                    by_key.setdefault(self.keys.user_asset_index(user, asset), []).append(str(sid))
        await self._pipeline([("ZREM", key, *ids) for key, ids in by_key.items()])
        return sum(int(reply[0]) for reply in removed)

    async def export_sessions(self, session_ids: Sequence[UUID]) -> ExportedSessions:
        """Freeze the sessions (no more writes) and return them with their whole histories;
        one that does not decode is reported with the reason, and stays frozen."""
        replies = await self._pipeline(
            (),
            [(self._freezing_read, self.keys.session_keys(s), (0, "1")) for s in session_ids],
            durable=True,  # a freeze a failover lost would let a write in before the delete
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
        # Frozen now: no write can append an event between this read and the removal.
        exported = [s.id for s in export.sessions]
        timelines = await self._pipeline(
            [("LRANGE", self.keys.session_keys(sid).events, 0, -1) for sid in exported]
        )
        for sid, raw in zip(exported, timelines, strict=True):
            try:
                export.events[sid] = events_from_json(raw, first_seq=1)
            except UNDECODABLE as exc:
                export.unreadable[sid] = failure_reason(exc)
        export.sessions = [s for s in export.sessions if s.id not in export.unreadable]
        return export

    async def thaw(self, session_ids: Sequence[UUID]) -> None:
        """Let sessions frozen by a failed archiving take writes again."""
        if session_ids:
            await self._pipeline(
                [("HDEL", self.keys.meta_key(sid), "frozen") for sid in session_ids]
            )

    async def expired_ids(self, *, now: datetime, limit: int, skip: int = 0) -> list[UUID]:
        """Sessions due for archival, from the expiry index, each re-checked on its meta.

        The shards are walked in order; ``skip`` due entries (those archival left behind)
        are passed over first, whole shards at a time by their counts. A session whose
        stored expiry is damaged counts as due, so that archival meets it and quarantines
        it; an index entry that is no session id at all is dropped. The first call of a
        run also finds an unsharded index an earlier version still writes, and moves it.
        """
        now_us = to_micros(now)
        shards = self.keys.expiry_shards()
        *counts, legacy = await self._pipeline(
            [("ZCOUNT", key, "-inf", now_us) for key in shards]
            + [("EXISTS", self.keys.legacy_expiry_index)]
        )
        if legacy and skip == 0:
            await self._move_indexes()
            counts = await self._pipeline([("ZCOUNT", key, "-inf", now_us) for key in shards])
        due: list[UUID] = []
        for key, count in zip(shards, counts, strict=True):
            if len(due) >= limit:
                break
            if skip >= count:
                skip -= count
                continue
            due += await self._due_in(key, now, limit - len(due), skip)
            skip = 0
        return list(dict.fromkeys(due))

    async def _due_in(self, key: str, now: datetime, limit: int, skip: int) -> list[UUID]:
        """Up to ``limit`` due sessions of one expiry shard, past its first ``skip`` due
        entries."""
        now_us = to_micros(now)
        due: list[UUID] = []
        while len(due) < limit:
            wanted = limit - len(due)
            batch = await self._call(
                "ZRANGEBYSCORE", key, "-inf", now_us, "LIMIT", skip + len(due), wanted
            )
            if not batch:
                break
            expiries = await self._pipeline(
                [("HGET", self.keys.meta_key(m), "expires_at") for m in batch]
            )
            for member, expires in zip(batch, expiries, strict=True):
                sid, expires_us = parsed_id(member), stored_micros(expires)
                if sid is not None and expires is not None and (expires_us or 0) <= now_us:
                    due.append(sid)
            await self._repair_expiry_index(key, batch, expiries, now)
            if len(batch) < wanted:
                break
        return due

    async def _repair_expiry_index(
        self, key: str, members: list[str], expiries: list[str | None], now: datetime
    ) -> None:
        """Drop entries of vanished sessions and entries that are no session id; re-score
        those not yet due (capped, see above)."""
        now_us = to_micros(now)
        cap = to_micros(now + self._rescore_horizon)
        bogus = [m for m in members if parsed_id(m) is None]
        gone = [m for m, e in zip(members, expiries, strict=True) if e is None] + bogus
        if bogus:
            logger.warning(
                "expiry index entries that are no session id dropped",
                extra={"event": "index.corrupt", "count": len(bogus)},
            )
        later = {
            m: min(expires_us, cap)
            for m, e in zip(members, expiries, strict=True)
            if (expires_us := stored_micros(e)) is not None
            and expires_us > now_us
            and parsed_id(m) is not None
        }
        commands: list[Command] = []
        if gone:
            commands.append(("ZREM", key, *gone))
        if later:
            items = [x for m, score in later.items() for x in (score, m)]
            commands.append(("ZADD", key, "XX", *items))
        await self._pipeline(commands)
