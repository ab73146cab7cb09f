"""The ``get-session-analytics`` tool: usage figures, scoped to the caller unless admin.

Figures come from :class:`~fiml.sessions.analytics.SessionAnalytics`, computed in the
database. A caller sees their own figures; an ``admin`` may name another user or ask for
every user's.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from fiml.core.errors import PermissionDeniedError
from fiml.mcp.arguments import (
    DaysArg,
    OptionalSessionTypeArg,
    advertised_session_type,
    argument,
)
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.replies import reply
from fiml.mcp.schemas import AnalyticsResult
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.models import SessionType
from fiml.sessions.store import parse_session_type

__all__ = ["AnalyticsStats", "AnalyticsTool", "StatsSource"]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

UserArg = Annotated[
    str | None,
    argument("Admin only: whose figures (default: your own)."),
]
AllUsersArg = Annotated[bool, argument("Admin only: figures across every user.")]


class StatsSource(Protocol):
    """Computes usage figures for one user (``user_id``) or every user (``None``)."""

    async def __call__(
        self, *, user_id: str | None, session_type: SessionType | None, days: float
    ) -> AnalyticsResult:
        """The figures over the sessions created in the last ``days`` days."""
        ...


class AnalyticsStats:
    """A :class:`StatsSource` over :class:`~fiml.sessions.analytics.SessionAnalytics`."""

    def __init__(self, analytics: SessionAnalytics) -> None:
        self.analytics = analytics

    async def __call__(
        self, *, user_id: str | None, session_type: SessionType | None, days: float
    ) -> AnalyticsResult:
        """The figures, labelled with whose they are and over which window."""
        stats = await self.analytics.get_session_stats(
            user_id=user_id, session_type=session_type, days=days
        )
        # The filter is shown as the analytics echo it, so the labels are what was computed.
        return AnalyticsResult.model_validate(
            {
                **stats,
                "scope": "all" if stats["user_id"] is None else "user",
                "days": stats["period_days"],
            }
        )


class AnalyticsTool:
    """``get-session-analytics``: the caller's own figures; admins may ask for others'."""

    def __init__(self, identity: IdentityResolver, source: StatsSource) -> None:
        self.identity = identity
        self.source = source

    def register(self, server: MCPServer) -> None:
        """Add the analytics tool to ``server``."""
        name = "get-session-analytics"
        server.add_tool(
            tool_boundary(name, self.identity)(self.get_session_analytics),
            name=name,
            annotations=_READ_ONLY,
        )

    async def get_session_analytics(
        self,
        session_type: OptionalSessionTypeArg = None,
        days: DaysArg = 30,
        user_id: UserArg = None,
        all_users: AllUsersArg = False,
    ) -> Annotated[CallToolResult, AnalyticsResult]:
        """Usage figures over the sessions created in the last `days` days: counts,
        durations, abandonment, top assets and tags, query mix, cache hit rate.

        Averages, rates and rankings cover finished sessions (archived after they were
        closed or expired); active_sessions counts those still running. Your own sessions
        unless you are an admin.
        """
        caller = self.identity.current()
        kind = (
            None
            if session_type is None
            else parse_session_type(advertised_session_type(session_type))
        )
        target: str | None = None if all_users else (user_id or caller.user_id)
        if target != caller.user_id and not caller.is_admin:
            raise PermissionDeniedError("reading other users' analytics", "admin")
        return reply(await self.source(user_id=target, session_type=kind, days=days))
