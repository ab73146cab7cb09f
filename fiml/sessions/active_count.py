"""Counting the sessions still running in an active tier, for analytics.

A backend can provide ``count_active`` (:class:`ActiveSessionCounter`); the SQL backend is
counted directly with one ``COUNT(*)`` on its partial expiry index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, cast, runtime_checkable

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from fiml.core.errors import ConfigurationError
from fiml.sessions.backends.sql import SqlBackend
from fiml.sessions.db import READ_ONLY_OPTION, SessionRecord

__all__ = ["ActiveSessionCounter", "count_active_sessions"]

S = cast(Table, SessionRecord.__table__)


@runtime_checkable
class ActiveSessionCounter(Protocol):
    """A backend that can count its running sessions (needed by non-SQL active tiers)."""

    async def count_active(
        self,
        *,
        now: datetime,
        user_id: str | None = None,
        session_type: str | None = None,
        created_since: datetime | None = None,
    ) -> int:
        """Sessions neither archived, closed nor past expiry, matching the filters."""
        ...


async def _count_active_sql(
    engine: AsyncEngine,
    *,
    now: datetime,
    user_id: str | None,
    session_type: str | None,
    created_since: datetime | None,
) -> int:
    conditions = [S.c.archived_at.is_(None), S.c.closed_at.is_(None), S.c.expires_at > now]
    if user_id is not None:
        conditions.append(S.c.user_id == user_id)
    if session_type is not None:
        conditions.append(S.c.session_type == session_type)
    if created_since is not None:
        conditions.append(S.c.created_at >= created_since)
    stmt = select(func.count()).select_from(S).where(*conditions)
    async with engine.execution_options(**{READ_ONLY_OPTION: True}).connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def count_active_sessions(
    backend: object,
    *,
    now: datetime,
    user_id: str | None = None,
    session_type: str | None = None,
    created_since: datetime | None = None,
) -> int:
    """Running sessions in an active tier: its ``count_active``, or SQL on a SQL backend."""
    filters: dict[str, Any] = {
        "now": now,
        "user_id": user_id,
        "session_type": session_type,
        "created_since": created_since,
    }
    if isinstance(backend, ActiveSessionCounter):
        return await backend.count_active(**filters)
    if isinstance(backend, SqlBackend):
        return await _count_active_sql(backend.engine, **filters)
    raise ConfigurationError(
        f"the {type(backend).__name__} active tier cannot count running sessions "
        "(it needs a count_active method)"
    )
