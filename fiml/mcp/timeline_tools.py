"""The timeline tools: replay a session as it was recorded, and fork it at a point.

``get-session-timeline`` reads the record each write kept (:mod:`fiml.sessions.events`),
never a provider; ``fork-session`` starts a new session of the caller's from one they may
read (:func:`~fiml.sessions.sharing.readable_session`: their own, or shared with them), as
it stood after query N or at a time. Any other session is reported exactly like an unknown
one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from fiml.core.errors import InvalidInputError
from fiml.mcp.arguments import CursorArg, SessionIdArg, argument
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.replies import reply
from fiml.mcp.schemas import ForkResult, TimelineResult
from fiml.sessions.sharing import readable_session
from fiml.sessions.store import MAX_PAGE, SessionStore

__all__ = ["DEFAULT_TIMELINE_PAGE", "TimelineTools"]

DEFAULT_TIMELINE_PAGE = 20
"""Events a timeline page holds unless told: a query's event with its recorded quote is
about 1.3 KB of reply (text and structured content), so a default page stays under 27 KB
(tests/mcp/test_reply_sizes.py holds it to that)."""

TimelineLimitArg = Annotated[
    int,
    argument(
        f"Page size (1-{MAX_PAGE}, default {DEFAULT_TIMELINE_PAGE}).",
        schema={"minimum": 1, "maximum": MAX_PAGE},
    ),
]
AfterQueriesArg = Annotated[
    int | None,
    argument(
        "Fork the session as it stood after its first this many queries (0: before any); "
        "give this or at, or neither for the session as it stands now.",
        schema={"minimum": 0},
    ),
]
AtArg = Annotated[
    str | None,
    argument(
        "Fork the session as it stood at this time (ISO 8601 with a time zone, e.g. "
        "2026-12-01T15:30:00Z); give this or after_queries.",
        schema={"format": "date-time"},
    ),
]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


def parsed_time(field: str, value: Any) -> datetime | None:
    """An ISO 8601 time with a time zone, or None; InvalidInputError naming ``field``."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise InvalidInputError(field, value, "must be an ISO 8601 time with a time zone")
    return parsed


class TimelineTools:
    """The timeline tools, bound to a store and to whoever the transport says is calling."""

    def __init__(self, store: SessionStore, identity: IdentityResolver) -> None:
        self.store = store
        self.identity = identity

    def register(self, server: MCPServer) -> None:
        """Add the timeline tools to ``server``."""
        for name, method, hints in (
            ("get-session-timeline", self.get_session_timeline, _READ_ONLY),
            ("fork-session", self.fork_session, _ADDITIVE),
        ):
            server.add_tool(
                tool_boundary(name, self.identity)(method), name=name, annotations=hints
            )

    async def get_session_timeline(
        self,
        session_id: SessionIdArg,
        limit: TimelineLimitArg = DEFAULT_TIMELINE_PAGE,
        cursor: CursorArg = None,
    ) -> Annotated[CallToolResult, TimelineResult]:
        """Replay a session: its tracked queries with the quotes they answered (provider,
        the quote's time, when it was fetched, whether cached, its figures) and its context
        and preference changes, in order, a page at a time (follow next_cursor). Nothing is
        fetched again; an archived session reads as it did while active."""
        caller = self.identity.current().user_id
        session = await readable_session(self.store, caller, session_id, history_limit=0)
        page = await self.store.get_timeline(session.id, limit=limit, cursor=cursor)
        return reply(TimelineResult.from_page(session.id, page))

    async def fork_session(
        self,
        session_id: SessionIdArg,
        after_queries: AfterQueriesArg = None,
        at: AtArg = None,
    ) -> Annotated[CallToolResult, ForkResult]:
        """Start a new session of yours from one you may read (yours, or shared with you) as
        it stood after query N or at a time: its assets, tags, context, preferences and
        queries up to there. The new session's metadata names the one it came from
        (forked_from)."""
        when = parsed_time("at", at)
        caller = self.identity.current().user_id
        origin = await readable_session(self.store, caller, session_id, history_limit=0)
        fork = await self.store.fork_session(
            origin.id, caller, after_queries=after_queries, at=when
        )
        return reply(ForkResult.of(fork, origin.id))
