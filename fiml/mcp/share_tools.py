"""The sharing tools: share-session, unshare-session, list-shared-sessions.

An owner shares one session read-only with another user (``user_id`` names the reader,
never the caller: the caller is always who the transport says). The reader then reads it
with get-session-info, get-session-history and the ``session://`` resource, and finds it
with list-shared-sessions; every write tool still answers as for an unknown session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from fiml.mcp.arguments import CursorArg, PageLimitArg, SessionIdArg, argument
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.flat_schema import ResultModel
from fiml.mcp.replies import reply
from fiml.mcp.schemas import SessionListItem
from fiml.sessions.models import SessionSummary
from fiml.sessions.sharing import MAX_READERS, SessionSharing, ShareChange
from fiml.sessions.store import SessionStore

__all__ = ["ShareResult", "ShareTools", "SharedSession", "SharedSessionList"]

ReaderArg = Annotated[
    str,
    argument(
        "The user to share with (or stop sharing with): their user id, as their token or "
        f"identity provider names them. A session may be shared with {MAX_READERS} users."
    ),
]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
_REVOKING = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


class ShareResult(ResultModel):
    """Whether a user may read a session after the call."""

    session_id: UUID
    user_id: str
    shared: bool = Field(description="True when user_id may now read the session.")
    changed: bool = Field(description="False when the call found it so already.")

    @classmethod
    def of(cls, change: ShareChange) -> ShareResult:
        """The result of a share or unshare."""
        return cls(
            session_id=change.session_id,
            user_id=change.reader_id,
            shared=change.shared,
            changed=change.changed,
        )


class SharedSession(SessionListItem):
    """A session someone shared with the caller."""

    owner: str = Field(description="Whose session it is.")
    shared_at: datetime


class SharedSessionList(ResultModel):
    """A page of the sessions shared with the caller, most recently shared first."""

    sessions: list[SharedSession]
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; absent at the end."
    )


class ShareTools:
    """The sharing tools, bound to a store and to whoever the transport says is calling."""

    def __init__(self, store: SessionStore, identity: IdentityResolver) -> None:
        self.sharing = SessionSharing(store)
        self.identity = identity

    def register(self, server: MCPServer) -> None:
        """Add the sharing tools to ``server``."""
        for name, method, hints in (
            ("share-session", self.share_session, _IDEMPOTENT),
            ("unshare-session", self.unshare_session, _REVOKING),
            ("list-shared-sessions", self.list_shared_sessions, _READ_ONLY),
        ):
            server.add_tool(
                tool_boundary(name, self.identity)(method), name=name, annotations=hints
            )

    async def share_session(
        self, session_id: SessionIdArg, user_id: ReaderArg
    ) -> Annotated[CallToolResult, ShareResult]:
        """Let another user read one of your sessions (read-only: they can never write,
        extend or close it). They find it with list-shared-sessions; unshare-session takes
        it back at once. Archived sessions stay shared."""
        owner = self.identity.current().user_id
        return reply(ShareResult.of(await self.sharing.share(owner, session_id, user_id)))

    async def unshare_session(
        self, session_id: SessionIdArg, user_id: ReaderArg
    ) -> Annotated[CallToolResult, ShareResult]:
        """Stop sharing one of your sessions with a user; their next read is refused."""
        owner = self.identity.current().user_id
        return reply(ShareResult.of(await self.sharing.unshare(owner, session_id, user_id)))

    async def list_shared_sessions(
        self, limit: PageLimitArg = 20, cursor: CursorArg = None
    ) -> Annotated[CallToolResult, SharedSessionList]:
        """List the sessions other users shared with you, most recently shared first, a
        page at a time (follow next_cursor). Read them with get-session-info."""
        page = await self.sharing.shared_with(
            self.identity.current().user_id, limit=limit, cursor=cursor
        )
        items = [
            SharedSession(
                **SessionListItem.from_summary(SessionSummary.from_session(s)).model_dump(),
                owner=grant.owner_id,
                shared_at=grant.shared_at,
            )
            for grant, s in page.sessions
        ]
        return reply(SharedSessionList(sessions=items, next_cursor=page.next_cursor))
