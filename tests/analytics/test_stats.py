"""Exact statistics over a known set of finished sessions."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from fiml.core.errors import InvalidInputError, InvalidSessionTypeError
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.jobs import run_cleanup
from fiml.sessions.models import QueryRecord, Session, SessionType
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session, metric_rows
from tests.clock import MovableClock

EQUITY, CRYPTO = SessionType.EQUITY, SessionType.CRYPTO


def known_sessions() -> list[Session]:
    """Three sessions in the last 30 days (two closed, one abandoned) and one older."""
    return [
        finished_session(
            user="alice",
            kind=EQUITY,
            assets=["AAPL", "MSFT"],
            tags=["tech", "earnings"],
            created_ago=timedelta(hours=2),
            lasted=timedelta(seconds=600),
            closed=True,
            queries={"price": (3, 2), "news": (1, 0)},
        ),
        finished_session(
            user="alice",
            kind=CRYPTO,
            assets=["BTC", "ETH"],
            tags=["crypto"],
            created_ago=timedelta(hours=3),
            lasted=timedelta(seconds=300),
            closed=False,
            queries={"price": (1, 0)},
        ),
        finished_session(
            user="bob",
            kind=EQUITY,
            assets=["AAPL"],
            tags=["tech", "Zeta"],
            created_ago=timedelta(hours=5),
            lasted=timedelta(seconds=1200),
            closed=True,
            queries={"price": (2, 1), "fundamentals": (3, 3)},
        ),
        finished_session(
            user="alice",
            kind=EQUITY,
            assets=["TSLA"],
            tags=["old"],
            created_ago=timedelta(days=40),
            lasted=timedelta(seconds=60),
            closed=True,
            queries={"price": (1, 1)},
        ),
    ]


@pytest.fixture
async def recorded(analytics: SessionAnalytics) -> SessionAnalytics:
    for session in known_sessions():
        await analytics.record_session_metrics(session)
    return analytics


async def test_stats_over_the_known_sessions_are_exact(recorded: SessionAnalytics) -> None:
    stats = await recorded.get_session_stats()

    assert stats == {
        "period_days": 30.0,
        "user_id": None,
        "session_type": None,
        "total_sessions": 3,
        "active_sessions": 0,
        "archived_sessions": 3,
        "total_queries": 10,
        "avg_duration_seconds": pytest.approx(700.0, rel=1e-12),
        "avg_queries_per_session": 10 / 3,
        "abandonment_rate": 1 / 3,
        "top_assets": [
            {"asset": "AAPL", "count": 2},
            {"asset": "BTC", "count": 1},
            {"asset": "ETH", "count": 1},
            {"asset": "MSFT", "count": 1},
        ],
        "query_type_distribution": {"price": 6, "fundamentals": 3, "news": 1},
        "session_type_breakdown": {"equity": 2, "crypto": 1},
        "popular_tags": [
            {"tag": "tech", "count": 2},
            {"tag": "Zeta", "count": 1},
            {"tag": "crypto", "count": 1},
            {"tag": "earnings", "count": 1},
        ],
        "cache_hit_rate": 0.6,
    }
    assert list(stats["query_type_distribution"]) == ["price", "fundamentals", "news"]


async def test_user_filter_is_exact(recorded: SessionAnalytics) -> None:
    stats = await recorded.get_session_stats(user_id="alice")

    assert stats["archived_sessions"] == 2
    assert stats["total_queries"] == 5
    assert stats["avg_duration_seconds"] == pytest.approx(450.0, rel=1e-12)
    assert stats["abandonment_rate"] == 0.5
    assert stats["cache_hit_rate"] == 0.4
    assert stats["top_assets"] == [
        {"asset": "AAPL", "count": 1},
        {"asset": "BTC", "count": 1},
        {"asset": "ETH", "count": 1},
        {"asset": "MSFT", "count": 1},
    ]
    assert stats["query_type_distribution"] == {"price": 4, "news": 1}
    assert stats["session_type_breakdown"] == {"equity": 1, "crypto": 1}


async def test_session_type_filter_is_exact(recorded: SessionAnalytics) -> None:
    stats = await recorded.get_session_stats(session_type="equity")

    assert stats["archived_sessions"] == 2
    assert stats["total_queries"] == 9
    assert stats["avg_duration_seconds"] == pytest.approx(900.0, rel=1e-12)
    assert stats["abandonment_rate"] == 0.0
    assert stats["cache_hit_rate"] == 6 / 9
    assert stats["top_assets"] == [{"asset": "AAPL", "count": 2}, {"asset": "MSFT", "count": 1}]
    assert stats["session_type_breakdown"] == {"equity": 2}
    both = await recorded.get_session_stats(user_id="alice", session_type=CRYPTO, days=7)
    assert (both["archived_sessions"], both["total_queries"]) == (1, 1)


async def test_stats_echo_their_filter(recorded: SessionAnalytics) -> None:
    both = await recorded.get_session_stats(user_id="alice", session_type=" Crypto ", days=7)
    everyone = await recorded.get_session_stats()

    assert (both["period_days"], both["user_id"], both["session_type"]) == (7.0, "alice", "crypto")
    assert (everyone["period_days"], everyone["user_id"], everyone["session_type"]) == (
        30.0,
        None,
        None,
    )


async def test_window_is_sessions_created_within_days(recorded: SessionAnalytics) -> None:
    sixty = await recorded.get_session_stats(days=60)
    assert sixty["archived_sessions"] == 4
    assert sixty["avg_duration_seconds"] == pytest.approx(540.0, rel=1e-12)
    assert sixty["abandonment_rate"] == 0.25
    assert sixty["top_assets"][-1] == {"asset": "TSLA", "count": 1}

    recent = await recorded.get_session_stats(days=2.5 / 24)
    assert recent["archived_sessions"] == 1
    assert recent["top_assets"] == [{"asset": "AAPL", "count": 1}, {"asset": "MSFT", "count": 1}]

    top_one = await recorded.get_session_stats(top=1)
    assert top_one["top_assets"] == [{"asset": "AAPL", "count": 2}]
    assert top_one["popular_tags"] == [{"tag": "tech", "count": 2}]


async def test_no_data_gives_zeros_and_a_message(recorded: SessionAnalytics) -> None:
    stats = await recorded.get_session_stats(days=1 / 24)

    assert stats == {
        "period_days": 1 / 24,
        "user_id": None,
        "session_type": None,
        "total_sessions": 0,
        "active_sessions": 0,
        "archived_sessions": 0,
        "total_queries": 0,
        "avg_duration_seconds": 0.0,
        "avg_queries_per_session": 0.0,
        "abandonment_rate": 0.0,
        "top_assets": [],
        "query_type_distribution": {},
        "session_type_breakdown": {},
        "popular_tags": [],
        "cache_hit_rate": 0.0,
        "message": "No sessions in the last 0.0416667 days.",
    }
    assert "message" not in await recorded.get_session_stats()


async def test_recording_twice_counts_once_and_replaces(
    analytics: SessionAnalytics, store: SessionStore
) -> None:
    first = known_sessions()[0]
    await analytics.record_session_metrics(first)
    await analytics.record_session_metrics(first)
    changed = first.model_copy(update={"assets": ["NVDA"]})
    await analytics.record_session_metrics(changed)

    stats = await analytics.get_session_stats()
    assert stats["archived_sessions"] == 1
    assert stats["total_queries"] == 4
    assert stats["top_assets"] == [{"asset": "NVDA", "count": 1}]
    assert stats["query_type_distribution"] == {"price": 3, "news": 1}
    assert await metric_rows(store) == 1


async def test_active_sessions_come_from_the_active_tier(
    recorded: SessionAnalytics, store: SessionStore
) -> None:
    await store.create_session(["AAPL"], EQUITY, user_id="alice", ttl_hours=1)
    await store.create_session(["BTC"], CRYPTO, user_id="alice", ttl_hours=1)
    await store.create_session(["MSFT"], EQUITY, user_id="bob", ttl_hours=1)
    closed = await store.create_session(["IBM"], EQUITY, user_id="bob", ttl_hours=1)
    await store.close_session(closed.id)
    expired = finished_session(
        user="bob",
        kind=EQUITY,
        assets=["X"],
        created_ago=timedelta(hours=2),
        lasted=timedelta(minutes=1),
        closed=False,
    )
    await store.backend.insert(expired)

    everyone = await recorded.get_session_stats()
    assert (everyone["active_sessions"], everyone["total_sessions"]) == (3, 6)
    alice = await recorded.get_session_stats(user_id="alice")
    assert (alice["active_sessions"], alice["total_sessions"]) == (2, 4)
    equity = await recorded.get_session_stats(session_type=EQUITY)
    assert equity["active_sessions"] == 2
    carol = await store.create_session(["SAP"], EQUITY, user_id="carol", ttl_hours=1)
    only_active = await recorded.get_session_stats(user_id=carol.user_id)
    assert (only_active["active_sessions"], only_active["archived_sessions"]) == (1, 0)
    assert only_active["message"].startswith("No finished sessions in the last 30 days")


async def test_user_summary(recorded: SessionAnalytics) -> None:
    summary = await recorded.get_user_session_summary("alice")

    assert summary["user_id"] == "alice"
    assert summary["stats"] == await recorded.get_session_stats(user_id="alice")
    recent = summary["recent_sessions"]
    assert [(r["session_type"], r["duration_seconds"], r["completed"]) for r in recent] == [
        ("equity", 600.0, True),
        ("crypto", 300.0, False),
    ]
    assert [r["abandoned"] for r in recent] == [False, True]
    assert summary["skipped_records"] == 0
    older = await recorded.get_user_session_summary("alice", days=60)
    assert len(older["recent_sessions"]) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"days": -1}, InvalidInputError, "days"),
        ({"days": 0}, InvalidInputError, "days"),
        ({"days": float("nan")}, InvalidInputError, "days"),
        ({"days": "30"}, InvalidInputError, "days"),
        ({"days": True}, InvalidInputError, "days"),
        ({"session_type": "bogus"}, InvalidSessionTypeError, "session_type"),
        ({"user_id": ""}, InvalidInputError, "user_id"),
        ({"top": 0}, InvalidInputError, "top"),
    ],
)
async def test_bad_input_is_a_typed_error(
    recorded: SessionAnalytics, kwargs: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        await recorded.get_session_stats(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.field == field
    with pytest.raises(InvalidInputError):
        await recorded.get_user_session_summary("")


async def test_recording_a_running_session_is_refused(
    analytics: SessionAnalytics, store: SessionStore
) -> None:
    running = await store.create_session(["AAPL"], EQUITY, user_id="alice", ttl_hours=1)

    with pytest.raises(InvalidInputError) as caught:
        await analytics.record_session_metrics(running)
    assert caught.value.field == "session"
    assert await metric_rows(store) == 0


async def test_end_to_end_through_the_store_and_cleanup(
    store: SessionStore, clock: MovableClock
) -> None:
    clock.move(-timedelta(hours=2))  # two sessions left to expire an hour ago
    left = await store.create_session(["AAPL"], EQUITY, user_id="u", ttl_hours=1)
    gone = await store.create_session(["BTC"], CRYPTO, user_id="u", ttl_hours=1, tags=["x"])
    for sid, hit in [(left.id, False), (gone.id, True)]:
        await store.append_query(sid, QueryRecord(query_type="price", cache_hit=hit))
    clock.move(timedelta(hours=2))
    done = await store.create_session(["AAPL", "MSFT"], EQUITY, user_id="u", ttl_hours=1)
    running = await store.create_session(["ETH"], CRYPTO, user_id="u", ttl_hours=1)
    for sid, kind, hit in [
        (done.id, "price", True),
        (done.id, "news", False),
        (running.id, "price", True),
    ]:
        await store.append_query(sid, QueryRecord(query_type=kind, cache_hit=hit))
    await store.close_session(done.id)

    result = await run_cleanup(store)
    stats = await SessionAnalytics(store).get_session_stats(user_id="u")

    assert (result.archived, result.metrics_recorded) == (3, 3)
    durations = []
    for sid in (done.id, left.id, gone.id):
        archived = await store.get_session(sid)
        assert archived is not None and archived.is_archived
        end = archived.closed_at or archived.last_accessed_at
        durations.append((end - archived.created_at).total_seconds())
    assert stats["avg_duration_seconds"] == pytest.approx(sum(durations) / 3, abs=1e-6)
    assert stats["total_sessions"] == 4
    assert stats["active_sessions"] == 1
    assert stats["archived_sessions"] == 3
    assert stats["total_queries"] == 4
    assert stats["abandonment_rate"] == 2 / 3
    assert stats["cache_hit_rate"] == 0.5
    assert stats["top_assets"] == [
        {"asset": "AAPL", "count": 2},
        {"asset": "BTC", "count": 1},
        {"asset": "MSFT", "count": 1},
    ]
    assert stats["query_type_distribution"] == {"price": 3, "news": 1}
    assert stats["session_type_breakdown"] == {"equity": 2, "crypto": 1}
    assert stats["popular_tags"] == [{"tag": "x", "count": 1}]


def _ended(*, closed: bool, queries: int) -> Session:
    return finished_session(
        user="dana",
        kind=EQUITY,
        assets=["AAPL"],
        created_ago=timedelta(hours=2),
        lasted=timedelta(minutes=10),
        closed=closed,
        queries={"price": (queries, 0)} if queries else None,
    )


async def test_abandoned_means_expired_unclosed_after_fewer_than_two_queries(
    analytics: SessionAnalytics,
) -> None:
    """The original's definition: a session left to expire after real work (two queries
    or more) was used, not abandoned; a closed session is completed whatever its queries."""
    cases = [
        (_ended(closed=False, queries=0), True),
        (_ended(closed=False, queries=1), True),
        (_ended(closed=False, queries=2), False),
        (_ended(closed=False, queries=7), False),
        (_ended(closed=True, queries=0), False),
        (_ended(closed=True, queries=1), False),
    ]
    for session, _ in cases:
        await analytics.record_session_metrics(session)

    stats = await analytics.get_session_stats(user_id="dana")
    summary = await analytics.get_user_session_summary("dana")
    exported = json.loads(await analytics.export_session_metrics("json", user_id="dana"))
    rows = csv.DictReader(io.StringIO(await analytics.export_session_metrics("csv")))

    expected = {str(session.id): abandoned for session, abandoned in cases}
    assert stats["abandonment_rate"] == 2 / 6
    assert {r["session_id"]: r["abandoned"] for r in summary["recent_sessions"]} == expected
    assert {s["session_id"]: s["abandoned"] for s in exported["sessions"]} == expected
    assert {r["session_id"]: r["abandoned"] == "True" for r in rows} == expected


async def test_sessions_used_only_through_the_five_spec_tools_are_not_all_abandoned(
    store: SessionStore, analytics: SessionAnalytics
) -> None:
    """Without close-analysis-session every session expires; those with queries count as
    used, as the original counted them."""
    worked = _ended(closed=False, queries=3)
    idle = _ended(closed=False, queries=0)
    for session in (worked, idle):
        await store.backend.insert(session)
    await run_cleanup(store)

    stats = await analytics.get_session_stats(user_id="dana")

    assert (stats["archived_sessions"], stats["abandonment_rate"]) == (2, 0.5)
    assert stats["total_queries"] == 3
