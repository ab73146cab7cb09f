"""The MCP server: session tools, search tools that track queries, per-user identity.

Build a server with :func:`build_server` from explicit dependencies, or run one with
:func:`run_server` (``python -m fiml.mcp``) over stdio or streamable HTTP.

The names below are imported from their modules when first looked up
(:mod:`fiml.core.lazy`), not with the package: importing any ``fiml.mcp`` module runs this
file first, and the server's modules would bring the whole MCP SDK into ``fiml sessions``,
which only asks who the local user is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fiml.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fiml.mcp.analytics_tool import AnalyticsStats, AnalyticsTool, StatsSource
    from fiml.mcp.auth import (
        BearerTokenIdentity,
        HashedTokenVerifier,
        Identity,
        IdentityResolver,
        Role,
        StaticIdentity,
        TokenEntry,
        TokenFile,
        hash_token,
        local_identity,
    )
    from fiml.mcp.resources import SESSION_URI_TEMPLATE, SessionResources
    from fiml.mcp.search_tools import SearchTools
    from fiml.mcp.server import MCP_PATH, Transport, build_server, open_market, run_server, serve
    from fiml.mcp.session_tools import SessionTools
    from fiml.mcp.tracking import DEFAULT_CONTEXT_QUERIES, TrackedQuery, track_query_in_session

_HOMES = {
    "AnalyticsStats": "fiml.mcp.analytics_tool",
    "AnalyticsTool": "fiml.mcp.analytics_tool",
    "StatsSource": "fiml.mcp.analytics_tool",
    "BearerTokenIdentity": "fiml.mcp.auth",
    "HashedTokenVerifier": "fiml.mcp.auth",
    "Identity": "fiml.mcp.auth",
    "IdentityResolver": "fiml.mcp.auth",
    "Role": "fiml.mcp.auth",
    "StaticIdentity": "fiml.mcp.auth",
    "TokenEntry": "fiml.mcp.auth",
    "TokenFile": "fiml.mcp.auth",
    "hash_token": "fiml.mcp.auth",
    "local_identity": "fiml.mcp.auth",
    "SESSION_URI_TEMPLATE": "fiml.mcp.resources",
    "SessionResources": "fiml.mcp.resources",
    "SearchTools": "fiml.mcp.search_tools",
    "MCP_PATH": "fiml.mcp.server",
    "Transport": "fiml.mcp.server",
    "build_server": "fiml.mcp.server",
    "open_market": "fiml.mcp.server",
    "run_server": "fiml.mcp.server",
    "serve": "fiml.mcp.server",
    "SessionTools": "fiml.mcp.session_tools",
    "DEFAULT_CONTEXT_QUERIES": "fiml.mcp.tracking",
    "TrackedQuery": "fiml.mcp.tracking",
    "track_query_in_session": "fiml.mcp.tracking",
}

__all__ = [
    "DEFAULT_CONTEXT_QUERIES",
    "MCP_PATH",
    "SESSION_URI_TEMPLATE",
    "AnalyticsStats",
    "AnalyticsTool",
    "BearerTokenIdentity",
    "HashedTokenVerifier",
    "Identity",
    "IdentityResolver",
    "Role",
    "SearchTools",
    "SessionResources",
    "SessionTools",
    "StaticIdentity",
    "StatsSource",
    "TokenEntry",
    "TokenFile",
    "TrackedQuery",
    "Transport",
    "build_server",
    "hash_token",
    "local_identity",
    "open_market",
    "run_server",
    "serve",
    "track_query_in_session",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and so refuse unknown names
    __getattr__, __dir__ = lazy_exports(__name__, _HOMES)
