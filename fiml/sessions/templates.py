"""Session templates: a user's named set of assets, type, tags, TTL and preferences.

``create-analysis-session`` starts a session from one (its explicit arguments override
the template's). Templates are rows of ``session_templates`` in the archive database on
every deployment, keyed by (user, name): saving a name again replaces that template.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Table, func, select

from fiml.core.errors import ContextValueError, InvalidCursorError, InvalidInputError
from fiml.sessions.db import TemplateRow
from fiml.sessions.identifiers import parse_session_type
from fiml.sessions.limits import (
    MAX_STATE_KEYS,
    check_hours,
    check_json,
    check_label,
    check_state_key,
    check_user_id,
    checked_state_value,
    normalize_assets,
    normalize_tags,
)
from fiml.sessions.models import SessionType
from fiml.sessions.paging import checked_page_limit
from fiml.sessions.sql_dialects import dialect_insert

if TYPE_CHECKING:
    from fiml.sessions.store import SessionStore

__all__ = [
    "MAX_TEMPLATES",
    "MAX_TEMPLATE_PREFERENCES_BYTES",
    "TEMPLATES",
    "SessionTemplate",
    "SessionTemplates",
    "TemplatePage",
    "list_templates",
    "load_template",
    "save_template",
]

TEMPLATES = cast(Table, TemplateRow.__table__)
MAX_TEMPLATES = 100
"""The most templates one user may keep."""
MAX_TEMPLATE_PREFERENCES_BYTES = 16 * 1024
"""The most a template's preferences may take as JSON: a template is listed whole, so its
size bounds a listing's reply."""


@dataclass(frozen=True, slots=True)
class SessionTemplate:
    """What a session made from this template starts with (``ttl_hours`` None: the
    server's default TTL)."""

    name: str
    session_type: SessionType
    assets: list[str]
    tags: list[str]
    ttl_hours: float | None
    preferences: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TemplatePage:
    """A page of a user's templates in name order."""

    templates: list[SessionTemplate]
    next_cursor: str | None


def checked_preferences(value: Any) -> dict[str, Any]:
    """A template's preferences, checked as a session's are, and bounded in size."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContextValueError("preferences", value, "must be an object of keys to values")
    if len(value) > MAX_STATE_KEYS:
        raise ContextValueError("preferences", len(value), f"more than {MAX_STATE_KEYS} keys")
    checked = {
        check_state_key("preferences", k): checked_state_value("preferences", k, v)
        for k, v in value.items()
    }
    check_json("preferences", checked, MAX_TEMPLATE_PREFERENCES_BYTES)
    return checked


def _row(user_id: str, template: SessionTemplate) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "name": template.name,
        "session_type": template.session_type.value,
        "assets": template.assets,
        "tags": template.tags,
        "ttl_hours": template.ttl_hours,
        "preferences": template.preferences,
        "updated_at": template.updated_at,
    }


def _template(row: Any) -> SessionTemplate:
    return SessionTemplate(
        name=row.name,
        session_type=SessionType(row.session_type),
        assets=list(row.assets),
        tags=list(row.tags),
        ttl_hours=row.ttl_hours,
        preferences=dict(row.preferences),
        updated_at=row.updated_at,
    )


def save_template(
    conn: Connection, user_id: str, template: SessionTemplate, *, max_templates: int
) -> None:
    """Store ``template`` for ``user_id``, replacing theirs of the same name; a new name
    is refused once they keep ``max_templates``."""
    mine = TEMPLATES.c.user_id == user_id
    exists = conn.execute(select(TEMPLATES.c.name).where(mine, TEMPLATES.c.name == template.name))
    if exists.first() is None:
        count = conn.execute(select(func.count()).select_from(TEMPLATES).where(mine)).scalar_one()
        if count >= max_templates:
            raise InvalidInputError(
                "name", template.name, f"you keep {max_templates} templates already"
            )
    row = _row(user_id, template)
    stmt = dialect_insert(conn.dialect.name, TEMPLATES)
    stmt = stmt.on_conflict_do_update(
        index_elements=[TEMPLATES.c.user_id, TEMPLATES.c.name],
        set_={k: v for k, v in row.items() if k not in ("user_id", "name")},
    )
    conn.execute(stmt, row)


def load_template(conn: Connection, user_id: str, name: str) -> SessionTemplate | None:
    """``user_id``'s template ``name``, or None."""
    stmt = select(TEMPLATES).where(TEMPLATES.c.user_id == user_id, TEMPLATES.c.name == name)
    row = conn.execute(stmt).first()
    return None if row is None else _template(row)


def list_templates(
    conn: Connection, user_id: str, *, limit: int, after: str | None
) -> list[SessionTemplate]:
    """``user_id``'s templates in name order, after the name ``after``."""
    stmt = select(TEMPLATES).where(TEMPLATES.c.user_id == user_id)
    if after is not None:
        stmt = stmt.where(TEMPLATES.c.name > after)
    stmt = stmt.order_by(TEMPLATES.c.name).limit(limit)
    return [_template(row) for row in conn.execute(stmt).all()]


def _checked_cursor(cursor: Any) -> str | None:
    """The name a listing continues after (None or "": the first page); a cursor is the
    last name of a page, so anything that is no template name is refused."""
    if cursor is None or cursor == "":
        return None
    try:
        name = check_label("cursor", cursor)
    except InvalidInputError:
        raise InvalidCursorError(cursor) from None
    if name != cursor:
        raise InvalidCursorError(cursor)
    return name


class SessionTemplates:
    """Save, find and list users' templates, on ``store``'s archive database."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def save(
        self,
        user_id: str,
        *,
        name: str,
        assets: Any,
        session_type: SessionType | str,
        tags: Any = None,
        ttl_hours: float | None = None,
        preferences: dict[str, Any] | None = None,
    ) -> SessionTemplate:
        """Check every field as a session's, then store the template (replacing one of
        the same name)."""
        user = cast(str, check_user_id(user_id, optional=False))
        ttl = None
        if ttl_hours is not None:
            ttl = check_hours(
                "ttl_hours", ttl_hours, maximum=self.store.settings.session_max_ttl_hours
            )
        template = SessionTemplate(
            name=check_label("name", name),
            session_type=parse_session_type(session_type),
            assets=normalize_assets(assets),
            tags=normalize_tags(tags),
            ttl_hours=ttl,
            preferences=checked_preferences(preferences),
            updated_at=self.store.now(),
        )
        await self.store.archive.save_template(user, template, max_templates=MAX_TEMPLATES)
        return template

    async def get(self, user_id: str, name: str) -> SessionTemplate:
        """``user_id``'s template ``name``; InvalidInputError naming ``template`` if they
        keep none of that name (another user's templates are never found)."""
        user = cast(str, check_user_id(user_id, optional=False))
        label = check_label("template", name)
        template = await self.store.archive.load_template(user, label)
        if template is None:
            raise InvalidInputError("template", name, "you have no template of this name")
        return template

    async def list(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> TemplatePage:
        """A page of ``user_id``'s templates in name order; ``next_cursor`` continues."""
        user = cast(str, check_user_id(user_id, optional=False))
        limit = checked_page_limit(limit)
        after = _checked_cursor(cursor)
        found = await self.store.archive.list_templates(user, limit=limit + 1, after=after)
        page = found[:limit]
        next_cursor = page[-1].name if len(found) > limit and page else None
        return TemplatePage(page, next_cursor)
