"""The session tools: create, inspect, list, extend, close, page history, update context.

Every tool acts for the caller the transport identified, on the caller's own sessions
only; another user's session is reported exactly like an unknown one. The two reading
tools (info, history) also read a session shared with the caller (:mod:`fiml.sessions.sharing`).
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from fiml.core.errors import InvalidInputError
from fiml.mcp.arguments import (
    CreateAssetsArg,
    CreateSessionTypeArg,
    CursorArg,
    HoursArg,
    IncludeArchivedArg,
    OffsetArg,
    PageLimitArg,
    RemoveKeysArg,
    SessionIdArg,
    StateArg,
    TagsArg,
    TemplateArg,
    TtlArg,
    advertised_session_type,
    argument,
)
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.ownership import owned_session
from fiml.mcp.replies import reply
from fiml.mcp.schemas import (
    ContextUpdateResult,
    HistoryResult,
    SessionDetails,
    SessionInfo,
    SessionList,
)
from fiml.sessions.sharing import readable_session
from fiml.sessions.store import SessionStore
from fiml.sessions.templates import SessionTemplates

__all__ = ["INFO_MAX_QUERIES", "INFO_RECENT_QUERIES", "SessionTools"]

INFO_RECENT_QUERIES = 1
"""How many of the latest queries get-session-info sends unless told: the stats already
cover the whole history, and each query sent is about 600 bytes (text and structured
content) that the client parses and checks against the output schema on every call, a
good part of the call's cost over stdio (benchmarks/RESULTS.md, ``mcp-stdio-ratio``)."""
INFO_MAX_QUERIES = 20
"""The most queries get-session-info sends; get-session-history pages through the rest."""

InfoQueriesArg = Annotated[
    int | None,
    argument(
        f"How many of the latest queries to send back (0-{INFO_MAX_QUERIES}, "
        f"default {INFO_RECENT_QUERIES}); get-session-history pages through all of them.",
        schema={"minimum": 0, "maximum": INFO_MAX_QUERIES},
    ),
]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
_IRREVERSIBLE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)
_OVERWRITING = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


class SessionTools:
    """The session tools, bound to a store and to whoever the transport says is calling."""

    def __init__(self, store: SessionStore, identity: IdentityResolver) -> None:
        self.store = store
        self.identity = identity
        self.templates = SessionTemplates(store)

    def register(self, server: MCPServer) -> None:
        """Add every session tool to ``server``."""
        for name, method, hints in (
            ("create-analysis-session", self.create_analysis_session, _ADDITIVE),
            ("get-session-info", self.get_session_info, _READ_ONLY),
            ("list-sessions", self.list_sessions, _READ_ONLY),
            ("extend-session", self.extend_session, _ADDITIVE),
            ("close-analysis-session", self.close_analysis_session, _IRREVERSIBLE),
            ("get-session-history", self.get_session_history, _READ_ONLY),
            ("update-session-context", self.update_session_context, _OVERWRITING),
        ):
            server.add_tool(
                tool_boundary(name, self.identity)(method), name=name, annotations=hints
            )

    async def create_analysis_session(
        self,
        assets: CreateAssetsArg = None,
        session_type: CreateSessionTypeArg = None,
        ttl_hours: TtlArg = None,
        tags: TagsArg = None,
        template: TemplateArg = None,
    ) -> Annotated[CallToolResult, SessionDetails]:
        """Open an analysis session on some assets and get its session_id.

        Pass the session_id to search-by-symbol / search-by-coin to have each query
        remembered, and to the other session tools. The session expires after ttl_hours
        unless extended; close it with close-analysis-session when the analysis is done.
        With template, the session starts from your saved template; what you pass here
        overrides it.
        """
        user = self.identity.current().user_id
        preferences: dict[str, Any] | None = None
        if template is not None:
            saved = await self.templates.get(user, template)
            assets = saved.assets if assets is None else assets
            session_type = saved.session_type.value if session_type is None else session_type
            ttl_hours = saved.ttl_hours if ttl_hours is None else ttl_hours
            tags = saved.tags if tags is None else tags
            preferences = saved.preferences
        if assets is None:
            raise InvalidInputError("assets", None, "is required without a template")
        if session_type is None:
            raise InvalidInputError("session_type", None, "is required without a template")
        session = await self.store.create_session(
            assets=assets,
            session_type=advertised_session_type(session_type),
            user_id=user,
            ttl_hours=ttl_hours,
            tags=tags,
            preferences=preferences,
        )
        return reply(SessionDetails.from_session(session))

    async def get_session_info(
        self, session_id: SessionIdArg, recent_queries: InfoQueriesArg = None
    ) -> Annotated[CallToolResult, SessionInfo]:
        """A session's details, query statistics, latest queries and accumulated context.

        Expired and closed sessions stay readable (their status says so) until archived;
        archived sessions are readable too.
        """
        count = _info_queries(recent_queries)
        session = await readable_session(
            self.store, self.identity.current().user_id, session_id, history_limit=count
        )
        return reply(SessionInfo.from_session(session))

    async def list_sessions(
        self,
        include_archived: IncludeArchivedArg = False,
        limit: PageLimitArg = 20,
        cursor: CursorArg = None,
    ) -> Annotated[CallToolResult, SessionList]:
        """List your sessions, newest first, a page at a time (follow next_cursor)."""
        page = await self.store.list_user_sessions_page(
            self.identity.current().user_id,
            include_archived=include_archived,
            limit=limit,
            cursor=cursor,
        )
        return reply(SessionList.from_page(page))

    async def extend_session(
        self, session_id: SessionIdArg, hours: HoursArg
    ) -> Annotated[CallToolResult, SessionDetails]:
        """Push a session's expiry back by some hours (an expired session cannot be revived)."""
        session = await owned_session(
            self.store, self.identity.current(), session_id, history_limit=0
        )
        extended = await self.store.extend_session(session.id, hours)
        return reply(SessionDetails.from_session(extended))

    async def close_analysis_session(
        self, session_id: SessionIdArg
    ) -> Annotated[CallToolResult, SessionDetails]:
        """Mark a session finished: it becomes read-only and is archived by the next cleanup.

        Closing says the analysis was completed; a session left to expire after fewer
        than two queries counts as abandoned in analytics.
        """
        session = await owned_session(
            self.store, self.identity.current(), session_id, history_limit=0
        )
        closed = await self.store.close_session(session.id)
        return reply(SessionDetails.from_session(closed))

    async def get_session_history(
        self,
        session_id: SessionIdArg,
        offset: OffsetArg = 0,
        limit: PageLimitArg = 50,
    ) -> Annotated[CallToolResult, HistoryResult]:
        """A page of a session's tracked queries, oldest first (follow next_offset)."""
        session = await readable_session(
            self.store, self.identity.current().user_id, session_id, history_limit=0
        )
        page = await self.store.get_history(session.id, offset=offset, limit=limit)
        return reply(HistoryResult.from_page(page))

    async def update_session_context(
        self,
        session_id: SessionIdArg,
        context: StateArg = None,
        preferences: StateArg = None,
        remove_context: RemoveKeysArg = None,
    ) -> Annotated[CallToolResult, ContextUpdateResult]:
        """Set context and preference keys of a session (and remove context keys).

        Only the keys given change; keys set by other calls are kept. Use it to remember
        findings and choices across queries.
        """
        session = await owned_session(
            self.store, self.identity.current(), session_id, history_limit=0
        )
        await self.store.update_state(
            session.id,
            context=context,
            preferences=preferences,
            remove_context=remove_context or (),
        )
        updated = await owned_session(
            self.store, self.identity.current(), session.id, history_limit=0
        )
        return reply(
            ContextUpdateResult(
                session_id=updated.id,
                context=dict(updated.state.context),
                preferences=dict(updated.state.preferences),
            )
        )


def _info_queries(value: Any) -> int:
    """How many of the latest queries get-session-info loads and sends."""
    if value is None:
        return INFO_RECENT_QUERIES
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INFO_MAX_QUERIES:
        raise InvalidInputError(
            "recent_queries", value, f"must be a whole number from 0 to {INFO_MAX_QUERIES}"
        )
    return value
