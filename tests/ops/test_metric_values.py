"""After a known workload, the Prometheus figures equal the store's and analytics' own.

The workload runs through the MCP tools (an in-memory client, as an agent would), on a
store whose clock the test moves past the sessions' TTL, and ends with one cleanup run.
What the metrics say about it (sessions created, closed, archived, expired, abandoned,
running; queries; durations) is then compared with what
:class:`~fiml.sessions.analytics.SessionAnalytics` and the store report.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from mcp import Client
from sqlalchemy.engine import make_url

from fiml.core.metrics import UNKNOWN_TYPE, PrometheusRecorder
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.mcp.ops_routes import OpsEndpoints
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.jobs import run_cleanup
from fiml.sessions.models import SessionType
from fiml.sessions.store import SessionStore
from tests.clock import MovableClock
from tests.conftest import settings_for
from tests.mcp.conftest import fails, ok
from tests.ops.conftest import sample, samples_by

TYPES = [kind.value for kind in SessionType]
SESSIONS = 40

# (session type, searches, closed by its user?, still running at the end?)
PLAN = [
    ("equity", 3, True, False),  # completed
    ("equity", 1, False, False),  # expired after one query: abandoned
    ("equity", 0, False, True),  # still running
    ("crypto", 2, False, False),  # expired after real work: neither
    ("crypto", 0, True, False),  # closed at once: completed
    ("macro", 1, False, False),  # abandoned; its search is sent twice (a retry)
]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


async def run_workload(store: SessionStore, clock: MovableClock) -> int:
    """The plan above through the tools; returns how many tool calls were made."""
    calls = 0
    async with MarketData.offline() as market:
        server = build_server(store=store, market=market, identity=StaticIdentity(Identity("al")))
        async with Client(server) as client:
            for kind, searches, close, running in PLAN:
                created = await ok(
                    client,
                    "create-analysis-session",
                    assets=["AAPL"],
                    session_type=kind,
                    ttl_hours=48 if running else 1,
                )
                sid = created["session_id"]
                calls += 1
                tool = "search-by-coin" if kind == "crypto" else "search-by-symbol"
                symbol = "BTC" if kind == "crypto" else "AAPL"
                for n in range(searches):
                    arguments = {"symbol": symbol, "session_id": sid, "request_id": f"r{n}"}
                    await ok(client, tool, **arguments)
                    calls += 1
                    if kind == "macro":
                        await ok(client, tool, **arguments)
                        calls += 1
                if close:
                    await ok(client, "close-analysis-session", session_id=sid)
                    calls += 1
            await fails(client, "get-session-info", session_id="not-a-session")
            calls += 1
    clock.move(timedelta(hours=2))
    report = await run_cleanup(store)
    assert report.ok and report.archived == len([p for p in PLAN if not p[3]])
    return calls


BACKEND_LABELS = {
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "redis+postgres": "redis+postgresql",
}


@pytest.mark.parametrize("deployment", sorted(BACKEND_LABELS))
async def test_figures_equal_the_stores_and_analytics(
    deployment: str, tmp_path: Path, clock: MovableClock, metrics: PrometheusRecorder
) -> None:
    # SQL alone archives in place, one statement per batch; the sessions it archived are
    # counted by type from the facts that statement returns, as the others are.
    settings = await settings_for(deployment, tmp_path)
    async with SessionStore(settings, clock=clock) as store:
        calls = await run_workload(store, clock)
        analytics = SessionAnalytics(store)
        stats = {kind: await analytics.get_session_stats(session_type=kind) for kind in TYPES}
        active = await OpsEndpoints(store).active_sessions()

    assert active == {kind: stats[kind]["active_sessions"] for kind in TYPES}
    assert active["equity"] == 1
    created = samples_by(metrics, "fiml_sessions_created_total", "session_type")
    assert created == {
        k: float(s["total_sessions"]) for k, s in stats.items() if s["total_sessions"]
    }
    archived = samples_by(metrics, "fiml_sessions_archived_total", "session_type")
    assert archived == {
        k: float(s["archived_sessions"]) for k, s in stats.items() if s["archived_sessions"]
    }
    for kind, figures in stats.items():
        done = figures["archived_sessions"]
        abandoned = sample(metrics, "fiml_sessions_abandoned_total", session_type=kind)
        assert abandoned == round(figures["abandonment_rate"] * done)
        durations = sample(metrics, "fiml_session_duration_seconds_count", session_type=kind)
        assert durations == done
        if done:
            total = sample(metrics, "fiml_session_duration_seconds_sum", session_type=kind)
            assert total / done == pytest.approx(figures["avg_duration_seconds"], rel=1e-6)
        queries = samples_by(metrics, "fiml_session_queries_total", "session_type")
        assert queries.get(kind, 0.0) == figures["total_queries"]
    assert samples_by(metrics, "fiml_sessions_abandoned_total", "session_type") == {
        "equity": 1.0,
        "macro": 1.0,
    }
    assert samples_by(metrics, "fiml_sessions_closed_total", "session_type") == {
        "equity": 1.0,
        "crypto": 1.0,
    }
    assert samples_by(metrics, "fiml_sessions_expired_total", "session_type") == {
        "equity": 1.0,
        "crypto": 1.0,
        "macro": 1.0,
    }
    outcomes = samples_by(metrics, "fiml_tool_calls_total", "outcome")
    assert outcomes == {"ok": calls - 1, "refused": 1.0}
    assert sample(metrics, "fiml_errors_total", error="InvalidSessionIdError") == 1
    assert sample(metrics, "fiml_cleanup_runs_total", outcome="ok") == 1
    assert sample(metrics, "fiml_cleanup_sessions_total", outcome="archived") == 5
    backends = samples_by(metrics, "fiml_store_operations_total", "backend")
    assert set(backends) == {BACKEND_LABELS[deployment]}


@pytest.mark.parametrize("kind", ["sqlite", "redis+postgres"])
async def test_overlapping_cleanups_count_each_session_once(
    kind: str, tmp_path: Path, clock: MovableClock, metrics: PrometheusRecorder
) -> None:
    settings = await settings_for(kind, tmp_path)
    async with SessionStore(settings, clock=clock) as store:
        for n in range(SESSIONS):
            await store.create_session(["BTC"], "crypto", user_id=f"u{n % 3}", ttl_hours=1)
        clock.move(timedelta(hours=2))
        reports = await asyncio.gather(*(run_cleanup(store, batch_size=7) for _ in range(3)))
    assert sum(r.archived for r in reports) == SESSIONS
    archived = samples_by(metrics, "fiml_sessions_archived_total", "session_type")
    assert sum(archived.values()) == SESSIONS
    assert sample(metrics, "fiml_cleanup_sessions_total", outcome="archived") == SESSIONS


async def test_a_session_archived_in_place_whose_facts_do_not_decode_counts_as_unknown(
    tmp_path: Path, clock: MovableClock, metrics: PrometheusRecorder
) -> None:
    # SQL alone: the archiving statement's facts give each session's type; a damaged row's
    # do not decode, so it alone is counted without a type, and the total stays exact.
    settings = await settings_for("sqlite", tmp_path)
    async with SessionStore(settings, clock=clock) as store:
        made = [await store.create_session(["AAPL"], "equity", ttl_hours=1) for _ in range(3)]
        database = make_url(settings.database_url).database
        assert database is not None
        with sqlite3.connect(database) as db:
            db.execute("UPDATE sessions SET assets = '[not json' WHERE id = ?", (made[1].id.hex,))
        clock.move(timedelta(hours=2))
        report = await run_cleanup(store)
    assert report.archived == 3
    assert samples_by(metrics, "fiml_sessions_archived_total", "session_type") == {
        "equity": 2.0,
        UNKNOWN_TYPE: 1.0,
    }
