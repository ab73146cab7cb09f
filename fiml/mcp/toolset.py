"""Every FIML tool and resource, registered on an MCP server.

Kept apart from :mod:`fiml.mcp.server` so that the server module imports none of the tool
modules, nor through them the session store, its SQLAlchemy and the market-data clients:
``fiml serve`` over stdio constructs its server and answers ``initialize`` first, and
imports this module while the client reads that answer (:mod:`fiml.mcp.start_gate`).
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import MCPServer

from fiml.market.service import MarketData
from fiml.mcp.analytics_tool import AnalyticsStats, AnalyticsTool, StatsSource
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.find_tools import FindTools
from fiml.mcp.resource_listing import SessionResourceListing
from fiml.mcp.resources import SessionResources
from fiml.mcp.search_tools import SearchTools
from fiml.mcp.session_tools import SessionTools
from fiml.mcp.session_watch import SessionWatch
from fiml.mcp.share_tools import ShareTools
from fiml.mcp.subscriptions import SessionSubscriptions
from fiml.mcp.template_tools import TemplateTools
from fiml.mcp.timeline_tools import TimelineTools
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.store import SessionStore

__all__ = ["register_tools", "session_middleware"]


def register_tools(
    server: MCPServer,
    *,
    store: SessionStore,
    market: MarketData,
    identity: IdentityResolver,
    stats: StatsSource | None = None,
) -> None:
    """Register the session, search and analytics tools and the session resource on
    ``server``, acting for whom ``identity`` resolves; ``stats`` computes analytics (by
    default :class:`~fiml.sessions.analytics.SessionAnalytics` on ``store``)."""
    SessionTools(store, identity).register(server)
    ShareTools(store, identity).register(server)
    TemplateTools(store, identity).register(server)
    TimelineTools(store, identity).register(server)
    FindTools(store, identity).register(server)
    SearchTools(store, market, identity).register(server)
    AnalyticsTool(identity, stats or AnalyticsStats(SessionAnalytics(store))).register(server)
    SessionResources(store, identity).register(server)


def session_middleware(
    store: SessionStore, identity: IdentityResolver, *, legacy_subscriptions: bool = True
) -> list[ServerMiddleware[Any]]:
    """The SDK middleware that answers from the store: ``resources/list`` as the caller's
    sessions (:class:`~fiml.mcp.resource_listing.SessionResourceListing`) and resource
    subscriptions (:class:`~fiml.mcp.subscriptions.SessionSubscriptions`; 2025 clients'
    ``resources/subscribe`` only with ``legacy_subscriptions``)."""
    return [
        SessionResourceListing(store, identity),
        SessionSubscriptions(SessionWatch(store), identity, legacy=legacy_subscriptions),
    ]
