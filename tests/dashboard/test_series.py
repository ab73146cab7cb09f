"""The per-day series and distributions add up to the window's statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from fiml.core.errors import InvalidInputError
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.analytics_series import (
    DURATION_BUCKETS,
    MAX_SERIES_DAYS,
    QUERY_BUCKETS,
    bucket_of,
    fold_series,
)
from fiml.sessions.metrics import MetricFilters
from tests.analytics.factories import damage
from tests.dashboard.dataset import FINISHED


def test_buckets_cover_every_value_once() -> None:
    for buckets in (DURATION_BUCKETS, QUERY_BUCKETS):
        assert buckets[0].low == 0 and buckets[-1].high is None
        for before, after in pairwise(buckets):
            assert before.high == after.low
    assert [bucket_of(QUERY_BUCKETS, n) for n in (0, 1, 2, 4, 5, 19, 20, 10**6)] == [
        0, 1, 2, 2, 3, 4, 5, 5,
    ]  # fmt: skip
    assert bucket_of(DURATION_BUCKETS, 59.999) == 0 and bucket_of(DURATION_BUCKETS, 60) == 1
    assert bucket_of(DURATION_BUCKETS, -1) == 0


def test_fold_lists_every_day_of_the_window_oldest_first() -> None:
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    since = now - timedelta(days=3)
    row = {
        "created_at": datetime(2026, 3, 8, 23, 59, tzinfo=UTC).isoformat(),
        "session_type": "crypto",
        "completed": False,
        "abandoned": True,
        "total_queries": 4,
        "cache_hits": 1,
        "duration_seconds": 61.0,
    }
    series = fold_series([row], MetricFilters(None, None, 3), since=since, now=now)
    assert [d["day"] for d in series["days"]] == [
        "2026-03-07",
        "2026-03-08",
        "2026-03-09",
        "2026-03-10",
    ]
    day = series["days"][1]
    assert day["sessions_by_type"]["crypto"] == 1 and sum(day["sessions_by_type"].values()) == 1
    assert (day["abandoned"], day["completed"], day["cache_hit_rate"]) == (1, 0, 0.25)
    assert series["days"][0]["cache_hit_rate"] == 0.0  # no queries: no rate, not a division
    assert series["duration_distribution"]["1-5 min"] == 1
    assert series["queries_distribution"]["2-4"] == 1
    assert list(series["duration_distribution"]) == [b.label for b in DURATION_BUCKETS]


async def test_series_add_up_to_the_stats(analytics: SessionAnalytics) -> None:
    for days, kind, user in [(30, None, None), (7, None, None), (30, "equity", "alice")]:
        stats = await analytics.get_session_stats(user_id=user, session_type=kind, days=days)
        series = await analytics.get_session_series(user_id=user, session_type=kind, days=days)
        assert len(series["days"]) == days + 1  # the window's partial first day, and today
        per_day = [sum(d["sessions_by_type"].values()) for d in series["days"]]
        assert sum(per_day) == stats["archived_sessions"]
        assert sum(series["duration_distribution"].values()) == stats["archived_sessions"]
        assert sum(series["queries_distribution"].values()) == stats["archived_sessions"]
        assert sum(d["queries"] for d in series["days"]) == stats["total_queries"]
        abandoned = sum(d["abandoned"] for d in series["days"])
        assert abandoned == round(stats["abandonment_rate"] * stats["archived_sessions"])
        hits = sum(d["cache_hits"] for d in series["days"])
        assert hits == round(stats["cache_hit_rate"] * stats["total_queries"])
        breakdown = {
            t: sum(d["sessions_by_type"][t] for d in series["days"])
            for t in series["days"][0]["sessions_by_type"]
        }
        assert {t: n for t, n in breakdown.items() if n} == stats["session_type_breakdown"]


async def test_the_known_data_set_per_day(analytics: SessionAnalytics) -> None:
    series = await analytics.get_session_series(days=30)
    today = analytics.store.now().date()
    by_day = {d["day"]: d for d in series["days"]}
    for ago in {row[3] for row in FINISHED}:
        day = by_day[(today - timedelta(days=ago)).isoformat()]
        assert sum(day["sessions_by_type"].values()) == sum(1 for r in FINISHED if r[3] == ago)
    assert sum(d["completed"] for d in series["days"]) == 4
    assert sum(d["abandoned"] for d in series["days"]) == 2
    assert series["queries_distribution"] == {
        "0": 1, "1": 1, "2-4": 3, "5-9": 1, "10-19": 0, ">= 20": 1,
    }  # fmt: skip
    assert series["duration_distribution"] == {
        "< 1 min": 1, "1-5 min": 1, "5-15 min": 2, "15-60 min": 1, "1-4 h": 1, ">= 4 h": 1,
    }  # fmt: skip


@pytest.mark.parametrize("days", [0, -1, MAX_SERIES_DAYS + 1, 1.5, True, "30", None])
async def test_a_bad_window_is_refused_naming_days(
    analytics: SessionAnalytics, days: object
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        await analytics.get_session_series(days=days)  # type: ignore[arg-type]
    assert raised.value.field == "days"


async def test_bad_filters_are_refused_naming_them(analytics: SessionAnalytics) -> None:
    with pytest.raises(InvalidInputError) as raised:
        await analytics.get_session_series(session_type="bonds")
    assert raised.value.field == "session_type"
    with pytest.raises(InvalidInputError) as raised:
        await analytics.get_session_series(user_id="")
    assert raised.value.field == "user_id"


async def test_a_damaged_record_costs_the_series_only_itself(
    analytics: SessionAnalytics, caplog: pytest.LogCaptureFixture
) -> None:
    await damage(
        analytics.store,
        "UPDATE session_metrics SET total_queries = 'lots' "
        "WHERE rowid = (SELECT min(rowid) FROM session_metrics)",
    )
    series = await analytics.get_session_series(days=30)
    assert series["skipped_records"] == 1
    assert sum(series["queries_distribution"].values()) == len(FINISHED) - 1
    assert any("total_queries" in record.getMessage() for record in caplog.records)
