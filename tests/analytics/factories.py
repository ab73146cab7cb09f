"""Sessions with chosen timestamps and histories, for exact analytics."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from fiml.core.config import Settings
from fiml.sessions.db import SessionMetrics
from fiml.sessions.models import AnalysisHistory, Session, SessionState, SessionType, utcnow
from fiml.sessions.store import SessionStore
from tests.conftest import STORE_KINDS, settings_for, sql_archive

ANALYTICS_KINDS = STORE_KINDS
"""Deployments whose active tier the analytics can count today (SQL backends)."""


def finished_session(
    *,
    user: str | None,
    kind: SessionType,
    assets: Sequence[str],
    tags: Sequence[str] = (),
    created_ago: timedelta,
    lasted: timedelta,
    closed: bool,
    queries: dict[str, tuple[int, int]] | None = None,
    now: datetime | None = None,
    archived: datetime | None = None,
) -> Session:
    """A session that ended ``lasted`` after it was created: closed, or abandoned.

    ``queries`` maps a query type to ``(count, cache hits)``. An abandoned session was last
    used at its end and expired 30 minutes later, so ``created_ago`` must exceed
    ``lasted`` by more than that.
    """
    now = now or utcnow()
    created = now - created_ago
    end = created + lasted
    counts = {kind_: n for kind_, (n, _) in (queries or {}).items()}
    history = AnalysisHistory(
        total_queries=sum(counts.values()),
        cache_hits=sum(h for _, h in (queries or {}).values()),
        query_type_counts=counts,
    )
    expires = end if closed else end + timedelta(minutes=30)
    assert expires <= now, "the session must have ended before now"
    return Session(
        user_id=user,
        type=kind,
        assets=list(assets),
        tags=list(tags),
        created_at=created,
        last_accessed_at=end,
        expires_at=expires,
        closed_at=end if closed else None,
        archived_at=archived,
        state=SessionState(history=history),
    )


@asynccontextmanager
async def open_store(kind: str, tmp_path: Path, **overrides: object) -> AsyncIterator[SessionStore]:
    """An initialized store on an emptied deployment."""
    settings: Settings = await settings_for(kind, tmp_path, **overrides)
    store = SessionStore(settings)
    await store.initialize()
    try:
        yield store
    finally:
        await store.shutdown()


async def metric_rows(store: SessionStore) -> int:
    """How many sessions have recorded facts."""
    async with sql_archive(store).engine.connect() as conn:
        stmt = select(func.count()).select_from(SessionMetrics)
        return int((await conn.execute(stmt)).scalar_one())


METRIC_TABLES = (
    "session_metric_assets",
    "session_metric_tags",
    "session_metric_query_types",
    "session_metrics",
)


async def damage(store: SessionStore, statement: str) -> None:
    """Run ``statement`` on the archive database with the plain driver, outside FIML, as a
    hand edit or another program would (sqlite3 for SQLite, asyncpg for PostgreSQL)."""
    url = make_url(store.settings.database_url)
    if url.get_backend_name() == "sqlite":
        with closing(sqlite3.connect(str(url.database), isolation_level=None)) as sqlite_conn:
            sqlite_conn.execute(statement)
        return
    pg_conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        await pg_conn.execute(statement)
    finally:
        await pg_conn.close()


def stored_id(store: SessionStore, session_id: UUID) -> str:
    """``session_id`` as a SQL literal the way the archive database stores it."""
    url = make_url(store.settings.database_url)
    return f"'{session_id.hex}'" if url.get_backend_name() == "sqlite" else f"'{session_id}'"


async def forget_metrics(store: SessionStore) -> None:
    """Delete every recorded fact, as for sessions archived before analytics recorded them."""
    for table in METRIC_TABLES:
        await damage(store, f"DELETE FROM {table}")


async def archived_unrecorded(store: SessionStore, count: int) -> list[UUID]:
    """``count`` closed sessions of user ``u``, archived, with no facts recorded."""
    ids = []
    for n in range(count):
        session = await store.create_session([f"S{n}"], "equity", user_id="u")
        await store.close_session(session.id)
        ids.append(session.id)
    await store.cleanup_expired_sessions()
    await forget_metrics(store)
    return ids
