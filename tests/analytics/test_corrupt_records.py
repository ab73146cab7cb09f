"""A record damaged outside FIML costs analytics only its own session.

Rows are damaged with the plain driver (sqlite3, asyncpg), as a hand edit would. SQLite
keeps whatever it is given; PostgreSQL enforces column types and JSON syntax, so there the
damage is JSON of the wrong shape or a value the metric tables cannot hold.
"""

from __future__ import annotations

import csv
import io
import json
import logging

import pytest

from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.jobs import run_metrics
from fiml.sessions.store import SessionStore
from tests.analytics.factories import archived_unrecorded, damage, metric_rows, stored_id
from tests.conftest import sql_archive

DAMAGE = {
    "sqlite": [
        "assets = 'not json'",
        "tags = '[1, 2]'",
        'query_type_counts = \'{"price": "many"}\'',
        "created_at = 'yesterday'",
        "total_queries = 'lots'",
        "session_type = 'bonds'",
        "id = 'not-a-uuid'",
    ],
    "postgresql": [
        'assets = \'{"not": "a list"}\'',
        "tags = '[1, 2]'",
        'query_type_counts = \'{"price": "many"}\'',
        "session_type = 'bonds'",
        f"assets = '[\"{'X' * 100}\"]'",
    ],
}


def damage_for(store: SessionStore) -> list[str]:
    return DAMAGE[sql_archive(store).engine.dialect.name]


async def test_corrupt_archived_rows_are_skipped_and_reported(
    analytics: SessionAnalytics, store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await archived_unrecorded(store, 20)
    edits = damage_for(store)
    damaged = ids[: len(edits)]
    for sid, edit in zip(damaged, edits, strict=True):
        await damage(store, f"UPDATE sessions SET {edit} WHERE id = {stored_id(store, sid)}")
    shown = {str(sid) for sid in damaged}
    if "id = 'not-a-uuid'" in edits:  # that record is known by what its id column holds now
        shown = shown - {str(damaged[-1])} | {"not-a-uuid"}

    with caplog.at_level(logging.WARNING, logger="fiml.sessions.analytics"):
        report = await analytics.record_archived_metrics(batch_size=3)

    assert report.recorded == 20 - len(edits)
    assert {s.session_id for s in report.skipped} == shown
    assert all(s.reason for s in report.skipped)
    logged = {r.session_id for r in caplog.records if hasattr(r, "session_id")}
    assert logged == shown
    assert await metric_rows(store) == 20 - len(edits)
    stats = await analytics.get_session_stats(user_id="u")
    assert stats["archived_sessions"] == 20 - len(edits)

    again = await analytics.record_archived_metrics()
    assert (again.recorded, {s.session_id for s in again.skipped}) == (0, shown)


async def test_a_repaired_row_is_recorded_by_the_next_run(
    analytics: SessionAnalytics, store: SessionStore
) -> None:
    ids = await archived_unrecorded(store, 3)
    where = f"WHERE id = {stored_id(store, ids[1])}"
    await damage(store, f"UPDATE sessions SET {damage_for(store)[0]} {where}")
    first = await run_metrics(store, analytics)
    assert (first.recorded, first.skipped_records, first.skipped) == (2, 1, False)

    await damage(store, f"UPDATE sessions SET assets = '[\"FIXED\"]' {where}")
    report = await analytics.record_archived_metrics()

    assert (report.recorded, report.skipped) == (1, ())
    stats = await analytics.get_session_stats(user_id="u")
    assert {"asset": "FIXED", "count": 1} in stats["top_assets"]


METRIC_DAMAGE = [
    "created_at = 'yesterday'",
    "ended_at = 'later'",
    "total_queries = 'lots'",
    "duration_seconds = 'long'",
    "session_id = 'not-a-uuid'",
]


@pytest.mark.parametrize("store_kind", ["sqlite"])
async def test_corrupt_metric_rows_leave_every_statistic_working(
    analytics: SessionAnalytics, store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Only SQLite can hold such values; PostgreSQL's column types refuse them.

    Aggregates run in the database, which reads a damaged value as 0, so the statistics
    still count every session; listings (summary, exports) skip the sessions they cannot
    decode and say how many.
    """
    ids = await archived_unrecorded(store, 10)
    assert (await analytics.record_archived_metrics()).recorded == 10
    for sid, edit in zip(ids, METRIC_DAMAGE, strict=False):
        await damage(store, f"UPDATE session_metrics SET {edit} WHERE session_id = '{sid.hex}'")
    where = "WHERE session_id = '{}'"
    await damage(
        store, "UPDATE session_metric_assets SET asset = X'00ff' " + where.format(ids[5].hex)
    )
    await damage(
        store,
        f"INSERT INTO session_metric_query_types VALUES ('{ids[6].hex}', 'price', 'x')",
    )
    undecodable = {str(sid) for sid in ids[:4]} | {"not-a-uuid"}
    intact = [str(sid) for sid in ids[7:]]

    with caplog.at_level(logging.WARNING, logger="fiml.sessions.analytics"):
        stats = await analytics.get_session_stats(user_id="u")
        summary = await analytics.get_user_session_summary("u")
        exported = json.loads(await analytics.export_session_metrics("json", user_id="u"))
        rows = list(csv.DictReader(io.StringIO(await analytics.export_session_metrics("csv"))))

    assert (stats["archived_sessions"], stats["total_queries"]) == (10, 0)
    assert {r["session_id"] for r in summary["recent_sessions"]} == {str(sid) for sid in ids[5:]}
    assert summary["skipped_records"] == 5
    assert sorted(s["session_id"] for s in exported["sessions"]) == sorted(intact)
    skipped = {s["session_id"] for s in exported["skipped"]}
    assert skipped == undecodable | {str(ids[5]), str(ids[6])}
    assert sorted(r["session_id"] for r in rows) == sorted(intact)
    logged = {r.session_id for r in caplog.records if hasattr(r, "session_id")}
    assert logged == skipped


async def test_damaged_sessions_rows_leave_every_call_working(
    analytics: SessionAnalytics, store: SessionStore
) -> None:
    ids = await archived_unrecorded(store, len(damage_for(store)) + 1)
    for sid, edit in zip(ids, damage_for(store), strict=False):
        await damage(store, f"UPDATE sessions SET {edit} WHERE id = {stored_id(store, sid)}")

    assert (await analytics.record_archived_metrics()).recorded == 1
    assert (await analytics.get_session_stats())["archived_sessions"] == 1
    assert len((await analytics.get_user_session_summary("u"))["recent_sessions"]) == 1
    assert len(json.loads(await analytics.export_session_metrics("json"))["sessions"]) == 1
    assert len((await analytics.export_session_metrics("csv")).splitlines()) == 2
