"""Reading a session's timeline a page at a time, and forking a session at a point of it.

A timeline page continues after the last event it returned (an opaque cursor holding that
event's ``seq``). A fork is a new session built from its origin as it stood after query N
or at time T: the first N queries (or those tracked by T), the context and preferences
that the timeline's events up to that point leave, the origin's assets, tags and type,
and ``metadata.forked_from`` naming the origin and the point. Nothing is refetched: the
fork's timeline starts as a copy of the origin's up to that point.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fiml.core.errors import InvalidCursorError, InvalidInputError
from fiml.sessions.events import SessionEvent
from fiml.sessions.history import QueryRecord, as_utc
from fiml.sessions.limits import check_count

__all__ = [
    "ForkPoint",
    "TimelinePage",
    "checked_fork_point",
    "decode_timeline_cursor",
    "encode_timeline_cursor",
    "events_up_to",
    "replayed_state",
]

_MAX_SEQ = 2**31 - 1


def encode_timeline_cursor(seq: int) -> str:
    """The cursor that continues a timeline after event ``seq``."""
    return base64.urlsafe_b64encode(f"e:{seq}".encode()).decode().rstrip("=")


def decode_timeline_cursor(cursor: Any) -> int:
    """The ``seq`` a cursor continues after (0 for None or ""); anything not made by
    :func:`encode_timeline_cursor` is an InvalidCursorError."""
    if cursor is None or cursor == "":
        return 0
    if not isinstance(cursor, str) or len(cursor) > 32:
        raise InvalidCursorError(cursor)
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidCursorError(cursor) from None
    prefix, _, number = text.partition(":")
    if prefix != "e" or not number.isdigit() or not 0 < int(number) <= _MAX_SEQ:
        raise InvalidCursorError(cursor)
    return int(number)


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """Events of a timeline in order, and the cursor of the next page (None at the end)."""

    events: list[SessionEvent]
    next_cursor: str | None

    @classmethod
    def of(cls, events: list[SessionEvent], *, limit: int) -> TimelinePage:
        """A page from up to ``limit + 1`` events read (one more says whether more follow)."""
        shown = events[:limit]
        more = len(events) > limit and bool(shown)
        return cls(shown, encode_timeline_cursor(shown[-1].seq) if more else None)


@dataclass(frozen=True, slots=True)
class ForkPoint:
    """Where a fork is taken: after query ``after_queries``, at time ``at``, or (neither)
    as the origin stands now."""

    after_queries: int | None = None
    at: datetime | None = None

    def as_metadata(self) -> dict[str, Any]:
        """How the fork's ``metadata.forked_from`` names the point."""
        if self.after_queries is not None:
            return {"after_queries": self.after_queries}
        if self.at is not None:
            return {"at": self.at.isoformat()}
        return {}


def checked_fork_point(after_queries: Any, at: Any) -> ForkPoint:
    """The point a fork is asked for; InvalidInputError naming the argument otherwise."""
    if after_queries is not None and at is not None:
        raise InvalidInputError("at", str(at), "give after_queries or at, not both")
    if after_queries is not None:
        return ForkPoint(
            after_queries=check_count("after_queries", after_queries, minimum=0, maximum=_MAX_SEQ)
        )
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidInputError("at", at, "must be a date and time")
        return ForkPoint(at=as_utc(at))
    return ForkPoint()


def _query_id(event: SessionEvent) -> str | None:
    return str(event.data.get("query_id")) if event.kind == "query" else None


def events_up_to(
    events: Sequence[SessionEvent], queries: Sequence[QueryRecord], point: ForkPoint
) -> tuple[list[SessionEvent], list[QueryRecord]]:
    """The timeline's prefix and the history's queries as the session stood at ``point``.

    After query N: the first N queries, and the events up to that query's own (so the
    context stored with it is in, later changes are not); N = 0 keeps the changes made
    before the first query's write. At T: the events up to the last one at or before T, and the
    queries they record (a query tracked before timelines existed counts by its own
    timestamp).
    """
    if point.after_queries is not None:
        kept = list(queries[: point.after_queries])
        if not kept:
            first = next((i for i, e in enumerate(events) if e.kind == "query"), len(events))
            # Not the state written with the first query (its write's events share its time).
            while 0 < first < len(events) and events[first - 1].at == events[first].at:
                first -= 1
            return list(events[:first]), []
        last_id = str(kept[-1].id)
        cut = next((i + 1 for i, e in enumerate(events) if _query_id(e) == last_id), None)
        if cut is None:  # a query from before timelines: the events no later than it
            cut = sum(1 for e in events if e.at <= kept[-1].timestamp)
        return list(events[:cut]), kept
    if point.at is not None:
        at = point.at
        cut = max((i + 1 for i, e in enumerate(events) if e.at <= at), default=0)
        prefix = list(events[:cut])
        on_timeline = {_query_id(e) for e in events if e.kind == "query"}
        recorded = {_query_id(e) for e in prefix if e.kind == "query"}
        kept = [
            q
            for q in queries
            if str(q.id) in recorded or (str(q.id) not in on_timeline and q.timestamp <= at)
        ]
        return prefix, kept
    return list(events), list(queries)


def replayed_state(events: Sequence[SessionEvent]) -> dict[str, dict[str, Any]]:
    """The context and preferences that ``events`` leave, replayed in order."""
    state: dict[str, dict[str, Any]] = {"context": {}, "preferences": {}}
    for event in events:
        if event.kind == "query":
            continue
        section = state[event.kind]
        section.update(event.data.get("set") or {})
        for key in event.data.get("removed") or []:
            section.pop(key, None)
    return state
