"""The search-sessions tool: find the caller's sessions, active and archived, by what they
analysed, how they are labelled, when, and the words of their context and results."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from fiml.mcp.arguments import (
    CursorArg,
    OptionalSessionTypeArg,
    PageLimitArg,
    advertised_session_type,
    argument,
)
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.replies import reply
from fiml.mcp.schemas import SessionList
from fiml.sessions.search import MAX_SEARCH_TEXT_CHARS, MAX_SEARCH_WORDS
from fiml.sessions.store import SessionStore

__all__ = ["FindTools"]

AssetArg = Annotated[
    str | None,
    argument("Only sessions that hold or held this asset, or tracked a query on it, e.g. 'NVDA'."),
]
TagArg = Annotated[str | None, argument("Only sessions carrying this tag.")]
TextArg = Annotated[
    str | None,
    argument(
        f"Only sessions whose context, or one of whose query result summaries, holds every "
        f"word of this (1-{MAX_SEARCH_WORDS} words, at most {MAX_SEARCH_TEXT_CHARS} "
        "characters; case does not matter).",
        schema={"maxLength": MAX_SEARCH_TEXT_CHARS},
    ),
]
SinceArg = Annotated[
    str | None,
    argument(
        "Only sessions created at or after this time (ISO 8601 with its offset, e.g. "
        "'2026-12-01T00:00:00Z').",
        schema={"format": "date-time"},
    ),
]
UntilArg = Annotated[
    str | None,
    argument(
        "Only sessions created before this time (ISO 8601 with its offset).",
        schema={"format": "date-time"},
    ),
]
SearchArchivedArg = Annotated[
    bool, argument("Also search sessions that have been archived (the default).")
]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


class FindTools:
    """search-sessions, bound to a store and to whoever the transport says is calling."""

    def __init__(self, store: SessionStore, identity: IdentityResolver) -> None:
        self.store = store
        self.identity = identity

    def register(self, server: MCPServer) -> None:
        """Add search-sessions to ``server``."""
        name = "search-sessions"
        server.add_tool(
            tool_boundary(name, self.identity)(self.search_sessions),
            name=name,
            annotations=_READ_ONLY,
        )

    async def search_sessions(
        self,
        asset: AssetArg = None,
        tag: TagArg = None,
        session_type: OptionalSessionTypeArg = None,
        text: TextArg = None,
        since: SinceArg = None,
        until: UntilArg = None,
        include_archived: SearchArchivedArg = True,
        limit: PageLimitArg = 20,
        cursor: CursorArg = None,
    ) -> Annotated[CallToolResult, SessionList]:
        """Find your sessions, active and archived, newest first, a page at a time (follow
        next_cursor): every criterion given must hold.

        asset finds the sessions that studied it (their assets, or a tracked query's
        symbol); text finds words in a session's context or in a query's result summary.
        """
        kind = None if session_type is None else advertised_session_type(session_type)
        page = await self.store.search_user_sessions(
            self.identity.current().user_id,
            asset=asset,
            tag=tag,
            session_type=kind,
            text=text,
            since=since,
            until=until,
            include_archived=include_archived,
            limit=limit,
            cursor=cursor,
        )
        return reply(SessionList.from_page(page))
