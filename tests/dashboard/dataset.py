"""A known data set for the dashboard: finished sessions over several days, and running ones."""

from __future__ import annotations

from datetime import timedelta

from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.models import SessionType
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)

FINISHED = [
    # (user, type, assets, created days ago, minutes lasted, closed, {query type: (n, hits)})
    ("alice", SessionType.EQUITY, ["AAPL", "MSFT"], 1, 12, True, {"search_by_symbol": (4, 1)}),
    ("alice", SessionType.EQUITY, ["AAPL"], 1, 3, False, {"search_by_symbol": (1, 0)}),
    ("bob", SessionType.CRYPTO, ["BTC", "ETH"], 2, 45, True, {"search_by_coin": (6, 3)}),
    ("bob", SessionType.CRYPTO, ["BTC"], 4, 90, False, {}),
    (
        "carol",
        SessionType.COMPARATIVE,
        ["AAPL", "BTC"],
        4,
        300,
        True,
        {"search_by_symbol": (10, 5), "search_by_coin": (12, 2)},
    ),
    ("carol", SessionType.PORTFOLIO, ["MSFT"], 6, 0.5, True, {"search_by_symbol": (2, 2)}),
    ("alice", SessionType.EQUITY, ["TSLA"], 20, 8, False, {"search_by_symbol": (3, 0)}),
]
"""Seven finished sessions: four completed, two abandoned (fewer than two queries, not
closed), one expired after real work; six in the last week, one 20 days back."""

ACTIVE = [("alice", SessionType.EQUITY, ["NVDA"]), ("bob", SessionType.CRYPTO, ["SOL"])]


async def seed(store: SessionStore) -> None:
    """Record the finished sessions' facts and open the running sessions."""
    analytics = SessionAnalytics(store)
    for user, kind, assets, ago, minutes, closed, queries in FINISHED:
        session = finished_session(
            user=user,
            kind=kind,
            assets=assets,
            created_ago=ago * DAY,
            lasted=minutes * MINUTE,
            closed=closed,
            queries=queries,
            now=store.now(),
        )
        await analytics.record_session_metrics(session)
    for user, kind, assets in ACTIVE:
        await store.create_session(assets, kind, user_id=user, ttl_hours=24)
