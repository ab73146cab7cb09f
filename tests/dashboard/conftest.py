"""The dashboard tests run on the embedded default, a SQLite file, as `fiml dashboard` does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fiml.core.config import Settings
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.store import SessionStore
from tests.conftest import sqlite_url
from tests.dashboard.dataset import seed


@pytest.fixture
async def seeded_store(tmp_path: Path) -> AsyncIterator[SessionStore]:
    """A store on the test's SQLite file holding the known data set."""
    store = SessionStore(Settings(database_url=sqlite_url(tmp_path), redis_url=None))
    await store.initialize()
    try:
        await seed(store)
        yield store
    finally:
        await store.shutdown()


@pytest.fixture
def analytics(seeded_store: SessionStore) -> SessionAnalytics:
    """Analytics over the known data set."""
    return SessionAnalytics(seeded_store)
