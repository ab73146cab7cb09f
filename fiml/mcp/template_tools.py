"""The template tools: save-session-template and list-session-templates.

A template is the caller's own named set of assets, type, tags, TTL and preferences;
``create-analysis-session`` takes its name as ``template``. Another user's templates are
never listed nor found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from fiml.mcp.arguments import (
    AssetsArg,
    CursorArg,
    PageLimitArg,
    SessionTypeArg,
    TagsArg,
    TtlArg,
    advertised_session_type,
    argument,
)
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.flat_schema import ResultModel
from fiml.mcp.replies import reply
from fiml.sessions.limits import MAX_LABEL_CHARS
from fiml.sessions.models import SessionType
from fiml.sessions.store import SessionStore
from fiml.sessions.templates import (
    MAX_TEMPLATE_PREFERENCES_BYTES,
    MAX_TEMPLATES,
    SessionTemplate,
    SessionTemplates,
)

__all__ = ["TemplateList", "TemplateNameArg", "TemplateTools", "TemplateView"]

TemplateNameArg = Annotated[
    str,
    argument(
        f"The template's name (1-{MAX_LABEL_CHARS} printable characters); saving a name "
        f"again replaces that template. You may keep {MAX_TEMPLATES} templates."
    ),
]
TemplatePreferencesArg = Annotated[
    dict[str, Any] | None,
    argument(
        "Preference keys a session made from the template starts with, each to any JSON "
        f"value ({MAX_TEMPLATE_PREFERENCES_BYTES // 1024} KiB at most in all)."
    ),
]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_OVERWRITING = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


class TemplateView(ResultModel):
    """A saved template."""

    name: str
    session_type: SessionType
    assets: list[str]
    tags: list[str]
    ttl_hours: float | None = Field(default=None, description="Absent: the server's default TTL.")
    preferences: dict[str, Any]
    updated_at: datetime

    @classmethod
    def from_template(cls, template: SessionTemplate) -> TemplateView:
        """The view of a stored template."""
        return cls(
            name=template.name,
            session_type=template.session_type,
            assets=template.assets,
            tags=template.tags,
            ttl_hours=template.ttl_hours,
            preferences=template.preferences,
            updated_at=template.updated_at,
        )


class TemplateList(ResultModel):
    """A page of the caller's templates, in name order."""

    templates: list[TemplateView]
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; absent at the end."
    )


class TemplateTools:
    """The template tools, bound to a store and to whoever the transport says is calling."""

    def __init__(self, store: SessionStore, identity: IdentityResolver) -> None:
        self.templates = SessionTemplates(store)
        self.identity = identity

    def register(self, server: MCPServer) -> None:
        """Add the template tools to ``server``."""
        for name, method, hints in (
            ("save-session-template", self.save_session_template, _OVERWRITING),
            ("list-session-templates", self.list_session_templates, _READ_ONLY),
        ):
            server.add_tool(
                tool_boundary(name, self.identity)(method), name=name, annotations=hints
            )

    async def save_session_template(
        self,
        name: TemplateNameArg,
        assets: AssetsArg,
        session_type: SessionTypeArg,
        tags: TagsArg = None,
        ttl_hours: TtlArg = None,
        preferences: TemplatePreferencesArg = None,
    ) -> Annotated[CallToolResult, TemplateView]:
        """Save a named template of assets, type, tags, TTL and preferences; start a
        session from it with create-analysis-session's template argument."""
        saved = await self.templates.save(
            self.identity.current().user_id,
            name=name,
            assets=assets,
            session_type=advertised_session_type(session_type),
            tags=tags,
            ttl_hours=ttl_hours,
            preferences=preferences,
        )
        return reply(TemplateView.from_template(saved))

    async def list_session_templates(
        self, limit: PageLimitArg = 20, cursor: CursorArg = None
    ) -> Annotated[CallToolResult, TemplateList]:
        """List your session templates in name order, a page at a time (follow next_cursor)."""
        page = await self.templates.list(
            self.identity.current().user_id, limit=limit, cursor=cursor
        )
        views = [TemplateView.from_template(t) for t in page.templates]
        return reply(TemplateList(templates=views, next_cursor=page.next_cursor))
