"""Each session as an MCP resource, ``session://{session_id}``, readable by its owner and by
the users it is shared with only."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import resource_boundary
from fiml.mcp.schemas import SessionInfo
from fiml.sessions.sharing import readable_session
from fiml.sessions.store import SessionStore

__all__ = ["SESSION_URI_TEMPLATE", "SessionResources"]

SESSION_URI_TEMPLATE = "session://{session_id}"
"""The URI of one session; reading it gives what ``get-session-info`` gives, as JSON."""


class SessionResources:
    """Serves ``session://{session_id}``: the caller's session as JSON."""

    def __init__(self, store: SessionStore, identity: IdentityResolver) -> None:
        self.store = store
        self.identity = identity

    def register(self, server: MCPServer) -> None:
        """Add the session resource template to ``server``."""
        reader = resource_boundary("session")(self.read_session)
        server.resource(
            SESSION_URI_TEMPLATE,
            name="analysis-session",
            title="Analysis session",
            description="One of your analysis sessions, or one shared with you: details, stats, "
            "recent queries, context.",
            mime_type="application/json",
        )(reader)

    async def read_session(self, session_id: str) -> str:
        """The session as JSON, if it is the caller's or shared with them; not found otherwise."""
        session = await readable_session(self.store, self.identity.current().user_id, session_id)
        return SessionInfo.from_session(session).model_dump_json()
