"""Exports: exact JSON and CSV documents, unknown formats refused, paths kept inside."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from fiml.core.errors import InvalidInputError
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.analytics_export import CSV_COLUMNS, FORMULA_TRIGGERS, neutralized
from fiml.sessions.metrics import MetricFilters
from fiml.sessions.metrics_rows import read_metric_rows_page
from fiml.sessions.models import Session, SessionType, utcnow
from tests.analytics.factories import finished_session
from tests.analytics.test_stats import known_sessions
from tests.conftest import sql_archive


@pytest.fixture
def known() -> list[Session]:
    return known_sessions()


@pytest.fixture
async def recorded(analytics: SessionAnalytics, known: list[Session]) -> SessionAnalytics:
    for session in known:
        await analytics.record_session_metrics(session)
    return analytics


async def test_csv_has_one_exact_row_per_session_oldest_first(
    recorded: SessionAnalytics, known: list[Session]
) -> None:
    document = await recorded.export_session_metrics("csv")

    rows = list(csv.DictReader(io.StringIO(document)))
    assert document.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert [r["session_id"] for r in rows] == [str(known[i].id) for i in (2, 1, 0)]
    assert [(r["user_id"], r["session_type"], r["completed"]) for r in rows] == [
        ("bob", "equity", "True"),
        ("alice", "crypto", "False"),
        ("alice", "equity", "True"),
    ]
    assert [r["assets"] for r in rows] == ["AAPL", "BTC;ETH", "AAPL;MSFT"]
    assert [r["tags"] for r in rows] == ["Zeta;tech", "crypto", "earnings;tech"]
    assert [r["query_types"] for r in rows] == [
        "fundamentals:3;price:2",
        "price:1",
        "news:1;price:3",
    ]
    assert [float(r["duration_seconds"]) for r in rows] == [1200.0, 300.0, 600.0]
    assert [(r["total_queries"], r["cache_hits"]) for r in rows] == [
        ("5", "4"),
        ("1", "0"),
        ("4", "2"),
    ]


async def test_json_holds_the_stats_and_the_sessions(recorded: SessionAnalytics) -> None:
    document = json.loads(await recorded.export_session_metrics("json", user_id="alice"))

    assert document["filters"] == {"user_id": "alice", "session_type": None, "days": 30.0}
    assert document["stats"] == json.loads(
        json.dumps(await recorded.get_session_stats(user_id="alice"))
    )
    assert [s["assets"] for s in document["sessions"]] == [["BTC", "ETH"], ["AAPL", "MSFT"]]
    assert [s["query_types"] for s in document["sessions"]] == [
        {"price": 1},
        {"news": 1, "price": 3},
    ]


async def test_unknown_format_is_refused(recorded: SessionAnalytics, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()

    with pytest.raises(InvalidInputError) as caught:
        await recorded.export_session_metrics("xml", path="out.xml", directory=exports)
    assert caught.value.field == "format"
    assert caught.value.value == "xml"
    assert list(exports.iterdir()) == []


async def test_export_writes_inside_the_directory(
    recorded: SessionAnalytics, tmp_path: Path
) -> None:
    document = await recorded.export_session_metrics(
        "csv", path="exports/metrics.csv", directory=tmp_path
    )

    assert (tmp_path / "exports" / "metrics.csv").read_bytes() == document.encode()
    assert len(document.splitlines()) == 4


@pytest.mark.parametrize("escape", ["../outside.csv", "a/../../outside.csv", "/tmp/outside.csv"])
async def test_paths_leading_out_of_the_directory_are_refused(
    recorded: SessionAnalytics, tmp_path: Path, escape: str
) -> None:
    inside = tmp_path / "exports"
    inside.mkdir()

    with pytest.raises(InvalidInputError) as caught:
        await recorded.export_session_metrics("csv", path=escape, directory=inside)
    assert caught.value.field == "path"
    assert not (tmp_path / "outside.csv").exists()
    assert list(inside.iterdir()) == []


async def test_a_symlink_out_of_the_directory_is_refused(
    recorded: SessionAnalytics, tmp_path: Path
) -> None:
    inside, outside = tmp_path / "exports", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (inside / "link").symlink_to(outside)

    with pytest.raises(InvalidInputError):
        await recorded.export_session_metrics("json", path="link/m.json", directory=inside)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("newest_first", [False, True])
async def test_pages_of_rows_cover_every_session_once_in_order(
    recorded: SessionAnalytics, known: list[Session], newest_first: bool
) -> None:
    since = utcnow() - timedelta(days=60)
    filters = MetricFilters(user_id=None, session_type=None, days=60)
    seen: list[str] = []
    after = None
    async with sql_archive(recorded.store).engine.connect() as conn:
        while True:
            page = await conn.run_sync(
                lambda sync: read_metric_rows_page(
                    sync,
                    filters.conditions(since),
                    after=after,  # noqa: B023 - run at once, inside this iteration
                    limit=1,
                    newest_first=newest_first,
                )
            )
            seen.extend(r["session_id"] for r in page.rows)
            if page.after is None:
                break
            after = page.after

    oldest_first = [str(s.id) for s in sorted(known, key=lambda s: s.created_at)]
    assert seen == (oldest_first[::-1] if newest_first else oldest_first)


FORMULAS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR"]


async def test_csv_cells_that_would_start_a_formula_are_neutralized(
    analytics: SessionAnalytics,
) -> None:
    # OWASP's CSV injection list: a cell starting with = + - @ tab or CR is a formula to a
    # spreadsheet. User ids and tags are the caller's text; both reach the export.
    for i, formula in enumerate(FORMULAS):
        session = finished_session(
            user=formula,
            kind=SessionType.EQUITY,
            assets=["AAPL"],
            tags=[formula, "safe"],
            created_ago=timedelta(hours=2, minutes=i),
            lasted=timedelta(minutes=10),
            closed=True,
        )
        await analytics.record_session_metrics(session)

    rows = list(csv.DictReader(io.StringIO(await analytics.export_session_metrics("csv"))))

    assert sorted(r["user_id"] for r in rows) == sorted("'" + f for f in FORMULAS)
    # Tags are stored stripped, so a leading tab or CR never reaches a tag's cell.
    tags = sorted(f"'{f};safe" if f.strip() == f else f"{f.strip()};safe" for f in FORMULAS)
    assert sorted(r["tags"] for r in rows) == tags
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(FORMULA_TRIGGERS), row
    document = json.loads(await analytics.export_session_metrics("json"))
    assert sorted(s["user_id"] for s in document["sessions"]) == sorted(FORMULAS)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("=A1", "'=A1"), ("plain", "plain"), ("a=b", "a=b"), ("", ""), ("'=x", "'=x")],
)
def test_neutralized_prefixes_only_formula_starts(text: str, shown: str) -> None:
    assert neutralized(text) == shown
