"""The dashboard in a real browser, against a real ``fiml serve --http`` on the known data
set: log in through the form, read every figure off the page, and compare it with what the
analytics API computes; a screenshot is saved (``FIML_DASHBOARD_SCREENSHOT=path`` saves
one there too, as for the docs' picture)."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path

import anyio
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from fiml.sessions.analytics import SessionAnalytics, SessionSeries, SessionStats
from fiml.sessions.models import SessionType
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session
from tests.dashboard.browser import chromium, full_page_screenshot, require_chromium
from tests.mcp.live_servers import http_server, write_tokens


def api_figures(stats: SessionStats, series: SessionSeries) -> dict[str, float]:
    """Every figure the page shows, named as its ``data-figure`` attributes name them."""
    figures: dict[str, float] = {
        f"stats.{key}": float(stats[key])
        for key in (
            "active_sessions",
            "archived_sessions",
            "total_queries",
            "avg_duration_seconds",
            "avg_queries_per_session",
            "abandonment_rate",
            "cache_hit_rate",
        )
    }
    figures.update({f"top_assets.{a['asset']}": a["count"] for a in stats["top_assets"]})
    figures.update({f"query_types.{t}": n for t, n in stats["query_type_distribution"].items()})
    figures.update({f"duration.{b}": n for b, n in series["duration_distribution"].items()})
    figures.update({f"queries.{b}": n for b, n in series["queries_distribution"].items()})
    for day in series["days"]:
        prefix = f"day.{day['day']}"
        figures.update({f"{prefix}.{t}": n for t, n in day["sessions_by_type"].items()})
        for key in ("completed", "abandoned", "queries", "cache_hits"):
            figures[f"{prefix}.{key}"] = day[key]
    return figures


def page_figures(session: object) -> dict[str, float]:
    """The ``data-figure`` elements of the page: the exact ``data-value``, else the text."""
    script = (
        "return Array.from(document.querySelectorAll('[data-figure]')).map(e => "
        "[e.dataset.figure, e.dataset.value ?? e.textContent]);"
    )
    pairs = session.execute_script(script)  # type: ignore[attr-defined]
    return {str(name): float(value) for name, value in pairs}


def browse(
    base: str,
    tokens: dict[str, str],
    shots: list[Path],
    finish_one: Callable[[], Coroutine[object, object, None]],
) -> dict[str, object]:
    """Log in (refused as a user, let in as the admin) and read the page; runs in a thread
    (Selenium blocks) while the test's event loop keeps reading the server's output."""
    seen: dict[str, object] = {}
    with chromium(shots[0].parent / "profile") as session:
        wait = WebDriverWait(session, 30)
        session.get(f"{base}/dashboard?days=30")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
        seen["login_url"] = session.current_url
        for who in ("alice", "root"):
            field = session.find_element(By.ID, "token")
            field.clear()
            field.send_keys(tokens[who])
            field.submit()
            wait.until(expected_conditions.staleness_of(field))  # the answer has loaded
            if who == "alice":
                wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
                seen["refusal"] = session.find_element(By.CSS_SELECTOR, "[role=alert]").text
        wait.until(expected_conditions.presence_of_element_located((By.ID, "panels")))
        seen["url"] = session.current_url
        seen["figures"] = page_figures(session)
        # The page refreshes itself: a session finished meanwhile appears without a reload.
        session.get(f"{base}/dashboard?days=30&refresh=2")
        before = page_figures(session)["stats.archived_sessions"]
        marker = session.find_element(By.ID, "panels")
        anyio.from_thread.run(finish_one)
        wait.until(lambda s: page_figures(s)["stats.archived_sessions"] == before + 1)
        seen["refreshed"] = page_figures(session)
        seen["same_document"] = marker.is_displayed()  # stale after a reload: it raises
        session.get(f"{base}/dashboard?days=30")
        seen["cookies"] = session.get_cookies()
        seen["title"] = session.title
        for shot in shots:
            full_page_screenshot(session, shot)
        logout = session.find_element(By.CSS_SELECTOR, "form[action='/dashboard/logout'] button")
        logout.click()
        wait.until(expected_conditions.staleness_of(logout))
        wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
        session.get(f"{base}/dashboard")
        seen["after_logout"] = session.current_url
    return seen


async def test_the_page_shows_the_analytics_figures_in_chromium(
    tmp_path: Path, seeded_store: SessionStore
) -> None:
    require_chromium()
    analytics = SessionAnalytics(seeded_store)
    tokens = write_tokens(tmp_path / "tokens.json", root="admin", alice="user")
    shots = [tmp_path / "dashboard.png"]
    if extra := os.environ.get("FIML_DASHBOARD_SCREENSHOT"):
        shots.append(Path(extra).resolve())
    before = await analytics.get_session_stats(days=30), await analytics.get_session_series(days=30)

    async def finish_one() -> None:
        late = finished_session(
            user="dana",
            kind=SessionType.MACRO,
            assets=["GLD"],
            created_ago=timedelta(hours=3),
            lasted=timedelta(minutes=20),
            closed=True,
            queries={"search_by_symbol": (3, 3)},
        )
        await analytics.record_session_metrics(late)

    async with http_server(tmp_path, tmp_path / "tokens.json") as server:
        base = server.url.removesuffix("/mcp")
        seen = await anyio.to_thread.run_sync(browse, base, tokens, shots, finish_one)
        log = server.log.decode(errors="replace")
    stats = await analytics.get_session_stats(days=30)
    series = await analytics.get_session_series(days=30)

    assert str(seen["login_url"]).endswith("/dashboard/login")
    assert "not an admin" in str(seen["refusal"])
    assert str(seen["url"]) == f"{base}/dashboard"
    assert seen["figures"] == api_figures(*before)
    assert before[0]["archived_sessions"] == 7 and before[0]["active_sessions"] == 2
    assert seen["refreshed"] == api_figures(stats, series) != seen["figures"]
    assert seen["same_document"] is True
    cookie = next(c for c in seen["cookies"] if c["name"] == "fiml_dashboard")  # type: ignore[attr-defined]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert str(seen["after_logout"]).endswith("/dashboard/login")
    for token in tokens.values():
        assert token not in log and token not in str(seen["url"])
    assert all(shot.stat().st_size > 10_000 for shot in shots)
