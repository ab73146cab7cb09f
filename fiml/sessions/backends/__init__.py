"""Storage backends, one module each, behind the tier Protocols of :mod:`.base`.

:func:`build_backends` picks the deployment from the settings (shared design, section 3):
SQLite or PostgreSQL alone, or Redis for active sessions with SQL as the archive.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from fiml.core.config import Settings
from fiml.core.errors import MissingDependencyError
from fiml.core.lazy import lazy_exports
from fiml.sessions.backends.base import ActiveTier, ArchiveTier

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient
    from fiml.sessions.backends.sql import SqlBackend

__all__ = ["ActiveTier", "ArchiveTier", "SqlBackend", "build_backends", "build_sql_backend"]


def build_sql_backend(settings: Settings) -> SqlBackend:
    """The SQL backend for ``settings.database_url``; with ``settings.redis_url`` the
    archive only (Redis holds the active sessions)."""
    # Imported when a SQL backend is built, not with this package: every module of the
    # backends package runs this file first, and SQLAlchemy is most of a command's start.
    from sqlalchemy.engine import make_url

    from fiml.sessions.backends.sql import SqlBackend
    from fiml.sessions.db import create_engine

    driver = make_url(settings.database_url).get_driver_name()
    if driver == "asyncpg" and importlib.util.find_spec("asyncpg") is None:
        raise MissingDependencyError("asyncpg", "postgres")
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        timeout=settings.database_timeout_seconds,
    )
    return SqlBackend(
        engine,
        auto_migrate=settings.database_auto_migrate,
        holds_active=not settings.redis_url,
    )


def build_backends(
    settings: Settings, *, redis: RedisClient | None = None
) -> tuple[ActiveTier, ArchiveTier]:
    """The active tier and the archive tier for these settings (mypy checks here that
    each backend satisfies its tier's Protocol); with ``settings.redis_url`` the active
    tier runs on ``redis``, the process's one client, or on a client of its own."""
    archive = build_sql_backend(settings)
    if not settings.redis_url:
        return archive, archive
    from fiml.sessions.backends.redis import RedisBackend

    if redis is not None:
        return RedisBackend.on_client(redis, settings=settings), archive
    return RedisBackend.from_url(settings.redis_url, settings=settings), archive


if not TYPE_CHECKING:  # SqlBackend is re-exported on first use, for the reason above
    __getattr__, __dir__ = lazy_exports(__name__, {"SqlBackend": "fiml.sessions.backends.sql"})
