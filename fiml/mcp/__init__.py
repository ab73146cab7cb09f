"""The MCP server: session tools, search tools that track queries, per-user identity.

Build a server with :func:`build_server` from explicit dependencies, or run one with
:func:`run_server` (``python -m fiml.mcp``) over stdio or streamable HTTP.
"""

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
