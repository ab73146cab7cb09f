"""Pages of a user's sessions and of a session's history: their models, bounds and cursors.

A user's sessions are listed newest first, a page at a time, continued by an opaque cursor
(:class:`~fiml.sessions.backends.base.ListCursor`); a history is read oldest first by
offset. Every bound is checked before a tier is asked: a bad one is an InvalidInputError
(or InvalidCursorError) naming the argument.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from fiml.core.errors import InvalidCursorError, InvalidInputError
from fiml.sessions.backends.base import ListCursor
from fiml.sessions.limits import check_count
from fiml.sessions.models import QueryRecord, Session, SessionStatus, SessionSummary

__all__ = [
    "ALL_QUERIES",
    "MAX_HISTORY_LIMIT",
    "MAX_OFFSET",
    "MAX_PAGE",
    "HistoryPage",
    "SessionPage",
    "checked_cursor",
    "checked_history_limit",
    "checked_offset",
    "checked_page_limit",
    "merged_listings",
]

ALL_QUERIES = -1
"""Pass as ``history_limit`` to :meth:`SessionStore.get_session` to load every query."""

MAX_PAGE = 1000
MAX_OFFSET = 2**31 - 1 - MAX_PAGE
"""History positions are 32-bit integers in SQL; no page can start past this."""
MAX_HISTORY_LIMIT = 2**31 - 1
"""The most queries ``get_session`` loads when asked for a number (SQL's LIMIT is 32-bit)."""


class SessionPage(BaseModel):
    """One page of a user's sessions, newest first, and the cursor of the next page."""

    sessions: list[SessionSummary]
    next_cursor: str | None = None

    @classmethod
    def of(cls, found: list[SessionSummary], *, limit: int, now: datetime | None) -> SessionPage:
        """The first ``limit`` of ``found`` (fetched one beyond, to know whether more
        follow), whose expiry is judged again as of ``now``, the store's time (None: as the
        tier judged it, by the system clock)."""
        page = found[:limit] if now is None else _as_of(found[:limit], now)
        more = len(found) > limit
        return cls(sessions=page, next_cursor=ListCursor.after(page[-1]).encode() if more else None)


class HistoryPage(BaseModel):
    """One page of a session's query history, oldest first."""

    session_id: UUID
    queries: list[QueryRecord]
    offset: int
    total_queries: int
    next_offset: int | None = None

    @classmethod
    def of(cls, session: Session, queries: list[QueryRecord], *, offset: int) -> HistoryPage:
        """The page of ``session``'s history holding ``queries``, from ``offset``."""
        total = session.state.history.total_queries
        end = offset + len(queries)
        return cls(
            session_id=session.id,
            queries=queries,
            offset=offset,
            total_queries=total,
            next_offset=end if end < total else None,
        )


def merged_listings(
    active: list[SessionSummary], archived: list[SessionSummary]
) -> list[SessionSummary]:
    """Two tiers' pages of a listing as one, newest first (a session in both, met while it
    moves, listed once)."""
    return sorted(
        {s.id: s for s in [*active, *archived]}.values(),
        key=lambda s: (s.created_at, s.id),
        reverse=True,
    )


def _as_of(summaries: list[SessionSummary], now: datetime) -> list[SessionSummary]:
    """Listing entries whose expiry is judged by the store's clock (a tier judges it by the
    system's as it reads)."""
    judged = []
    for summary in summaries:
        expired = summary.expires_at <= now
        if expired != summary.is_expired:
            status = summary.status
            if status in (SessionStatus.ACTIVE, SessionStatus.EXPIRED):
                status = SessionStatus.EXPIRED if expired else SessionStatus.ACTIVE
            summary = summary.model_copy(update={"is_expired": expired, "status": status})
        judged.append(summary)
    return judged


def checked_page_limit(limit: Any) -> int:
    """How many entries a page holds: 1 to :data:`MAX_PAGE`."""
    return check_count("limit", limit, minimum=1, maximum=MAX_PAGE)


def checked_offset(offset: Any) -> int:
    """Where a history page starts: 0 to :data:`MAX_OFFSET`."""
    return check_count("offset", offset, minimum=0, maximum=MAX_OFFSET)


def checked_history_limit(value: Any) -> int | None:
    """How many recent queries to load: a count, or None for :data:`ALL_QUERIES`."""
    if not isinstance(value, bool) and isinstance(value, int) and value == ALL_QUERIES:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HISTORY_LIMIT:
        raise InvalidInputError(
            "history_limit",
            value,
            f"must be an integer from 0 to {MAX_HISTORY_LIMIT}, or ALL_QUERIES ({ALL_QUERIES})",
        )
    return value


def checked_cursor(cursor: Any) -> ListCursor | None:
    """The position a listing continues after (None or "": the first page)."""
    if cursor is None or cursor == "":
        return None
    if not isinstance(cursor, str):
        raise InvalidCursorError(cursor)
    try:
        position = ListCursor.decode(cursor)
    except RecursionError:  # a cursor nesting JSON arrays thousands deep
        raise InvalidCursorError(cursor) from None
    if position.created_at.utcoffset() is None:  # cursors this store makes are in UTC
        raise InvalidCursorError(cursor)
    return position
