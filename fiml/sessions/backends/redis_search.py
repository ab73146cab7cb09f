"""Finding a user's active sessions in Redis (the criteria: :mod:`fiml.sessions.search`).

By asset, a search walks the user's asset index (``RedisKeyspace.user_asset_index``), a
sorted set per user and asset scored by creation time, newest first: it reads about as
many sessions as it returns, whatever the number stored. Other criteria are checked on
each session met (tag, type and time on its meta hash; words on its context and its
queries' summaries); without an asset, the walk is the user's session index.

The asset index is written after the session: the apply script reports which assets a
write brought that the session's ``assets`` set (``SessionKeys.assets``, in the session's
slot) does not hold; they are added to the user's indexes, then to that set. A process
that dies in between leaves the set without them, so the next write bringing one of them
indexes it again (``ZADD NX``: harmless twice). A session is indexed before it is created,
as the user's session index is. Entries of sessions no longer in Redis (archived: the
archive finds them) are dropped where a search meets them.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from fiml.sessions.backends.base import ListCursor
from fiml.sessions.backends.redis_codec import SUMMARY_META_NAMES, to_micros
from fiml.sessions.backends.redis_commands import Command
from fiml.sessions.backends.redis_indexes import score_pairs
from fiml.sessions.backends.redis_reads import RedisReads, decoded_summaries
from fiml.sessions.backends.summaries import summaries_from_values
from fiml.sessions.models import Session, SessionSummary, utcnow
from fiml.sessions.search import SessionSearch, context_words_from_json, query_asset

__all__ = ["RedisSearch", "session_assets"]

_BATCH = 100


def session_assets(session: Session) -> list[str]:
    """The assets a new session is indexed by: its own, and its queries' symbols."""
    symbols = (query_asset(q) for q in session.state.history.queries)
    return list(dict.fromkeys([*session.assets, *(s for s in symbols if s is not None)]))


def _summary_of(raw: str) -> str | None:
    try:
        summary = json.loads(raw).get("result_summary")
    except (ValueError, AttributeError):
        return None  # a damaged query matches nothing; reading the session reports it
    return summary if isinstance(summary, str) else None


class RedisSearch(RedisReads):
    """The asset index and the searches of :class:`~fiml.sessions.backends.redis.RedisBackend`."""

    def asset_index_adds(
        self, user_id: str, created_us: int, session_id: str, assets: list[str]
    ) -> list[Command]:
        """The commands that add a session to its user's index of each asset."""
        return [
            ("ZADD", self.keys.user_asset_index(user_id, asset), "NX", created_us, session_id)
            for asset in assets
        ]

    async def index_assets(
        self, session_id: UUID, user_id: str, created_us: int, assets: list[str]
    ) -> None:
        """Add a session to its user's asset indexes, then record that they hold it."""
        sid = str(session_id)
        commands = self.asset_index_adds(user_id, created_us, sid, assets)
        await self._pipeline([*commands, ("SADD", self.keys.session_keys(sid).assets, *assets)])

    async def search_user(
        self, user_id: str, search: SessionSearch, *, limit: int, cursor: ListCursor | None
    ) -> list[SessionSummary]:
        """Up to ``limit`` of a user's active sessions matching ``search``, newest first."""
        after = None if cursor is None else (to_micros(cursor.created_at), str(cursor.session_id))
        if search.until is not None:
            top = (to_micros(search.until), "")  # strictly before until: every id sorts after ""
            after = top if after is None or top < after else after
        since = None if search.since is None else to_micros(search.since)
        found: list[SessionSummary] = []
        exhausted = False
        while len(found) < limit and not exhausted:
            entries, exhausted = await self._candidates(user_id, search, after, max(limit, _BATCH))
            if since is not None:
                exhausted = exhausted or any(score < since for score, _ in entries)
                entries = [(score, m) for score, m in entries if score >= since]
            if not entries:
                break
            rows = await self._candidate_rows(user_id, search, [m for _, m in entries])
            met = [s for s in summaries_from_values(rows, utcnow()) if _kept(s, search)]
            if search.words:
                met = await self._with_words(met, search)
            found += met
            after = entries[-1]
        return found[:limit]

    async def _candidates(
        self, user_id: str, search: SessionSearch, after: tuple[int, str] | None, count: int
    ) -> tuple[list[tuple[int, str]], bool]:
        """Up to ``count`` (created, id) entries strictly after ``after``, newest first, from
        the user's index of the asset searched for, else from the user's sessions index;
        and whether the index ran out."""
        if search.asset is None:
            start = None if after is None else (after[1], after[0])
            page, done = await self._user_page(user_id, start, count)
            return [(score, member) for member, score in page], done
        key = self.keys.user_asset_index(user_id, search.asset)
        top = "+inf" if after is None else after[0]
        offset = 0
        while True:
            reply = await self._call(
                "ZREVRANGEBYSCORE", key, top, "-inf", "WITHSCORES", "LIMIT", offset, count
            )
            batch = [(score, member) for member, score in score_pairs(reply)]
            entries = [entry for entry in batch if after is None or entry < after]
            if entries or len(batch) < count:
                return entries, len(batch) < count
            offset += count

    async def _candidate_rows(
        self, user_id: str, search: SessionSearch, members: list[str]
    ) -> list[dict[str, Any]]:
        """Listing rows of the candidates; drops asset-index entries of vanished sessions
        (the sessions index drops its own, :meth:`_summary_rows`)."""
        if search.asset is None:
            return await self._summary_rows(user_id, members)
        metas = await self._pipeline(
            [("HMGET", self.keys.meta_key(m), *SUMMARY_META_NAMES) for m in members]
        )
        gone = [m for m, meta in zip(members, metas, strict=True) if not any(meta)]
        if gone:
            await self._call("ZREM", self.keys.user_asset_index(user_id, search.asset), *gone)
        return decoded_summaries(zip(members, metas, strict=True))

    async def _with_words(
        self, summaries: list[SessionSummary], search: SessionSearch
    ) -> list[SessionSummary]:
        """Those of ``summaries`` whose context or one of whose summaries holds the words."""
        commands: list[Command] = []
        for summary in summaries:
            keys = self.keys.session_keys(summary.id)
            commands += [("HVALS", keys.context), ("LRANGE", keys.queries, 0, -1)]
        replies = await self._pipeline(commands) if commands else []
        kept = []
        for i, summary in enumerate(summaries):
            context, queries = replies[2 * i], replies[2 * i + 1]
            summaries_text = (_summary_of(raw) for raw in queries)
            if search.matches_words(context_words_from_json(context), summaries_text):
                kept.append(summary)
        return kept


def _kept(summary: SessionSummary, search: SessionSearch) -> bool:
    """Whether a session passes the criteria a listing entry shows (not asset, not words)."""
    return (
        (search.tag is None or search.tag in summary.tags)
        and (search.session_type is None or summary.type.value == search.session_type)
        and (search.since is None or summary.created_at >= search.since)
        and (search.until is None or summary.created_at < search.until)
    )
