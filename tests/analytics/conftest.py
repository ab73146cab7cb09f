"""Analytics tests run on every deployment whose active tier they can count."""

from __future__ import annotations

import pytest

from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.store import SessionStore
from tests.analytics.factories import ANALYTICS_KINDS


@pytest.fixture(params=ANALYTICS_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The deployment under test (overrides the contract suite's list)."""
    return str(request.param)


@pytest.fixture
def analytics(store: SessionStore) -> SessionAnalytics:
    """Analytics over the store under test."""
    return SessionAnalytics(store)
