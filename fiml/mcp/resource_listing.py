"""``resources/list`` answers with the caller's sessions, a page at a time.

The SDK's ``MCPServer`` lists only resources registered up front, and without pages; FIML's
sessions are per user and unbounded. :class:`SessionResourceListing` is a server middleware
(the SDK's public ``ServerMiddleware`` seam, given to ``MCPServer(middleware=...)``) that
answers ``resources/list`` itself: the caller's sessions, newest first, as
``session://{session_id}`` resources, with the protocol's ``cursor`` / ``nextCursor`` paging
(the cursor is the store's listing cursor). Every other request passes through untouched.
Each listed resource reads as the ``session://`` template already serves it.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ListResourcesResult, Resource

from fiml.core.errors import InvalidInputError
from fiml.mcp.auth import IdentityResolver
from fiml.sessions.models import SessionSummary
from fiml.sessions.store import SessionStore

__all__ = ["RESOURCE_PAGE_SIZE", "SessionResourceListing"]

RESOURCE_PAGE_SIZE = 50
"""Sessions per ``resources/list`` page: a client pages on with ``nextCursor``."""


def _resource(summary: SessionSummary) -> Resource:
    assets = ", ".join(summary.assets)
    return Resource(
        uri=f"session://{summary.id}",
        name=f"analysis-session-{summary.id}",
        title=f"{summary.type.value} session on {assets}",
        description=f"{summary.status.value}, {summary.total_queries} queries",
        mime_type="application/json",
    )


class SessionResourceListing:
    """A server middleware: ``resources/list`` is the caller's sessions, paged."""

    def __init__(
        self,
        store: SessionStore,
        identity: IdentityResolver,
        *,
        page_size: int = RESOURCE_PAGE_SIZE,
    ) -> None:
        self.store = store
        self.identity = identity
        self.page_size = page_size

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method != "resources/list" or ctx.request_id is None:
            return await call_next(ctx)
        cursor = (ctx.params or {}).get("cursor")
        try:
            page = await self.store.list_user_sessions_page(
                self.identity.current().user_id,
                include_archived=False,
                limit=self.page_size,
                cursor=cursor,
            )
        except InvalidInputError as exc:  # a cursor this server did not make
            raise MCPError(INVALID_PARAMS, f"invalid {exc.field}") from None
        return ListResourcesResult(
            resources=[_resource(s) for s in page.sessions], next_cursor=page.next_cursor
        )
