"""The dashboard's HTML: the login form and the page of charts, rendered on the server.

Each figure appears three times: drawn in an SVG chart (:mod:`fiml.dashboard.svg`), as text
in the chart, and in a table under it whose cells carry ``data-figure`` names, so people,
screen readers and tests read the same numbers. The page refreshes its panels itself: a
small inline script (allowed by the page's Content-Security-Policy nonce) fetches the same
URL every :data:`REFRESH_SECONDS` (or ``?refresh=S``) and swaps them in; without script a
meta refresh does it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from fiml.dashboard.svg import bar_chart, line_chart, stacked_bar_chart
from fiml.sessions.analytics import SessionSeries, SessionStats
from fiml.sessions.models import SessionType

__all__ = ["REFRESH_RANGE", "REFRESH_SECONDS", "WINDOWS", "Filters", "dashboard_page", "login_page"]

REFRESH_SECONDS = 30
"""How often the page refreshes itself by default; ``?refresh=S`` picks another period."""
REFRESH_RANGE = (2, 3600)
WINDOWS = (1, 7, 30, 90, 365)
"""The windows (days) the page offers; any whole number of days is accepted in the URL."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
header{background:#fff;border-bottom:1px solid #d8dde3;padding:12px 24px;display:flex;
gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:20px;margin:0 auto 0 0}
main{padding:16px 24px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,
minmax(440px,1fr))}
section{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:12px 16px}
section.wide{grid-column:1/-1}
h2{font-size:16px;margin:0 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d8dde3;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
td,th{border:1px solid #d8dde3;padding:2px 6px;text-align:right}
th{text-align:left;background:#f0f2f5}
form.inline{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.error{color:#a40000;font-weight:bold}
.muted{color:#555}
.window{margin:8px 24px}
svg{max-width:100%;height:auto}
"""


@dataclass(frozen=True, slots=True)
class Filters:
    """The window, session type and user the page shows (None: all)."""

    days: int = 30
    session_type: str | None = None
    user_id: str | None = None
    refresh_seconds: int = REFRESH_SECONDS


def _document(title: str, body: str, *, nonce: str, head: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>{head}"
        f'<style nonce="{nonce}">{_STYLE}</style></head><body>{body}</body></html>'
    )


def login_page(*, csrf: str, error: str | None = None, nonce: str) -> str:
    """The login form: the token goes in the body of a POST, never in the URL."""
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        '<header><h1>FIML sessions dashboard</h1></header><main><section class="wide">'
        "<h2>Log in</h2>"
        '<p class="muted">Admins only: paste your FIML admin token.</p>'
        f"{message}"
        '<form method="post" action="/dashboard/login" class="inline">'
        '<label for="token">Token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required size="48">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<button type="submit">Log in</button></form></section></main>'
    )
    return _document("FIML dashboard: log in", body, nonce=nonce)


def _figure(name: str, value: str) -> str:
    return f'<td data-figure="{escape(name)}">{escape(value)}</td>'


def _table(headers: Iterable[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return (
        f"<details><summary>Figures</summary><table><tr>{head}</tr>{''.join(rows)}</table>"
        "</details>"
    )


def _pairs_table(prefix: str, header: str, pairs: Iterable[tuple[str, int]]) -> str:
    rows = (
        f"<tr><th>{escape(label)}</th>{_figure(f'{prefix}.{label}', str(n))}</tr>"
        for label, n in pairs
    )
    return _table([header, "Count"], rows)


def _percent(rate: float) -> str:
    return f"{rate:.1%}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _cards(stats: SessionStats) -> str:
    # data-value holds the exact figure (as JSON writes it), the text a readable rounding.
    cards = [
        ("Active sessions now", "active_sessions", str(stats["active_sessions"])),
        ("Finished sessions", "archived_sessions", str(stats["archived_sessions"])),
        ("Queries", "total_queries", str(stats["total_queries"])),
        ("Average duration", "avg_duration_seconds", repr(stats["avg_duration_seconds"])),
        ("Queries per session", "avg_queries_per_session", repr(stats["avg_queries_per_session"])),
        ("Abandonment rate", "abandonment_rate", repr(stats["abandonment_rate"])),
        ("Cache-hit rate", "cache_hit_rate", repr(stats["cache_hit_rate"])),
    ]
    shown = {
        "avg_duration_seconds": _duration(stats["avg_duration_seconds"]),
        "avg_queries_per_session": f"{stats['avg_queries_per_session']:.2f}",
        "abandonment_rate": _percent(stats["abandonment_rate"]),
        "cache_hit_rate": _percent(stats["cache_hit_rate"]),
    }
    parts = []
    for label, key, exact in cards:
        parts.append(
            f'<div class="card"><span>{escape(label)}</span>'
            f'<b data-figure="stats.{key}" data-value="{escape(exact)}">'
            f"{escape(shown.get(key, exact))}</b></div>"
        )
    return f'<div class="cards">{"".join(parts)}</div>'


def _filter_form(filters: Filters, types: Iterable[str]) -> str:
    windows = sorted({*WINDOWS, filters.days})
    day_options = "".join(
        f'<option value="{d}"{" selected" if d == filters.days else ""}>{d} days</option>'
        for d in windows
    )
    type_options = '<option value="">all types</option>' + "".join(
        f'<option value="{escape(t)}"{" selected" if t == filters.session_type else ""}>'
        f"{escape(t)}</option>"
        for t in types
    )
    user = escape(filters.user_id or "")
    refresh = (
        ""
        if filters.refresh_seconds == REFRESH_SECONDS
        else f'<input type="hidden" name="refresh" value="{filters.refresh_seconds}">'
    )
    return (
        '<form method="get" action="/dashboard" class="inline" aria-label="Filters">'
        f'<label>Window <select name="days">{day_options}</select></label>'
        f'<label>Type <select name="type">{type_options}</select></label>'
        f'<label>User <input name="user" value="{user}" placeholder="all users" size="14">'
        f'</label>{refresh}<button type="submit">Show</button></form>'
    )


def panels(stats: SessionStats, series: SessionSeries) -> str:
    """The cards and charts of one window: the part of the page that refreshes."""
    days = [d["day"] for d in series["days"]]
    types = [t.value for t in SessionType]
    by_type = {t: [d["sessions_by_type"].get(t, 0) for d in series["days"]] for t in types}
    outcomes = {
        "completed": [d["completed"] for d in series["days"]],
        "abandoned": [d["abandoned"] for d in series["days"]],
    }
    rates: list[tuple[str, float | None]] = [
        (d["day"], d["cache_hit_rate"] if d["queries"] else None) for d in series["days"]
    ]
    day_rows = [
        f"<tr><th>{escape(d['day'])}</th>"
        + "".join(
            _figure(f"day.{d['day']}.{t}", str(d["sessions_by_type"].get(t, 0))) for t in types
        )
        + _figure(f"day.{d['day']}.completed", str(d["completed"]))
        + _figure(f"day.{d['day']}.abandoned", str(d["abandoned"]))
        + _figure(f"day.{d['day']}.queries", str(d["queries"]))
        + _figure(f"day.{d['day']}.cache_hits", str(d["cache_hits"]))
        + "</tr>"
        for d in series["days"]
    ]
    day_table = _table(["Day", *types, "completed", "abandoned", "queries", "cache hits"], day_rows)
    top_assets = [(a["asset"], a["count"]) for a in stats["top_assets"]]
    query_mix = list(stats["query_type_distribution"].items())
    durations = list(series["duration_distribution"].items())
    per_session = list(series["queries_distribution"].items())
    sections = [
        ("wide", "Now and in this window", _cards(stats)),
        (
            "wide",
            "Sessions per day by type",
            stacked_bar_chart("Finished sessions per day, by session type", days, by_type)
            + day_table,
        ),
        (
            "",
            "Completed vs abandoned",
            stacked_bar_chart(
                "Completed and abandoned sessions per day", days, outcomes, width=520
            ),
        ),
        (
            "",
            "Cache-hit rate per day",
            line_chart("Share of queries answered from cache, per day", rates, width=520),
        ),
        (
            "",
            "Session durations",
            bar_chart("Finished sessions by duration", durations)
            + _pairs_table("duration", "Duration", durations),
        ),
        (
            "",
            "Queries per session",
            bar_chart("Finished sessions by number of queries", per_session)
            + _pairs_table("queries", "Queries", per_session),
        ),
        (
            "",
            "Top assets",
            bar_chart("Assets analysed by the most sessions", top_assets)
            + _pairs_table("top_assets", "Asset", top_assets),
        ),
        (
            "",
            "Query-type mix",
            bar_chart("Queries by query type", query_mix)
            + _pairs_table("query_types", "Query type", query_mix),
        ),
    ]
    note = stats.get("message")
    notice = f'<section class="wide"><p role="status">{escape(note)}</p></section>' if note else ""
    return notice + "".join(
        f'<section class="{cls}"><h2>{escape(title)}</h2>{content}</section>'
        for cls, title, content in sections
    )


def _refresh_script(nonce: str, seconds: int) -> str:
    # Fetch this same URL and swap the panels in, so the filters and the scroll position
    # stay; a failed fetch leaves the figures as they were and says so.
    return (
        f'<script nonce="{nonce}">(function(){{'
        f"var every={seconds * 1000};"
        "function tick(){fetch(location.href,{credentials:'same-origin'})"
        ".then(function(r){if(!r.ok)throw new Error(r.status);return r.text();})"
        ".then(function(html){var doc=new DOMParser().parseFromString(html,'text/html');"
        "var fresh=doc.getElementById('panels');if(!fresh)throw new Error('no panels');"
        "document.getElementById('panels').innerHTML=fresh.innerHTML;"
        "document.getElementById('updated').textContent="
        "doc.getElementById('updated').textContent;})"
        ".catch(function(){document.getElementById('updated').textContent+="
        "' (refresh failed; retrying)';})"
        ".then(function(){setTimeout(tick,every);});}"
        "setTimeout(tick,every);})();</script>"
    )


def dashboard_page(
    stats: SessionStats,
    series: SessionSeries,
    *,
    filters: Filters,
    user_id: str,
    generated_at: str,
    nonce: str,
    logout_csrf: str | None,
) -> str:
    """The whole page; ``logout_csrf`` None for the local dashboard, which has no login."""
    logout = (
        ""
        if logout_csrf is None
        else '<form method="post" action="/dashboard/logout">'
        f'<input type="hidden" name="csrf" value="{escape(logout_csrf)}">'
        '<button type="submit">Log out</button></form>'
    )
    body = (
        "<header><h1>FIML sessions dashboard</h1>"
        f"{_filter_form(filters, [t.value for t in SessionType])}"
        f'<span class="muted">{escape(user_id)}</span>{logout}</header>'
        f'<p class="muted window">Window: last {filters.days} days; '
        f'updated <span id="updated">{escape(generated_at)}</span>; '
        f"refreshes every {filters.refresh_seconds} s.</p>"
        f'<main id="panels" data-window="{filters.days}">{panels(stats, series)}</main>'
        f"{_refresh_script(nonce, filters.refresh_seconds)}"
    )
    head = f'<noscript><meta http-equiv="refresh" content="{filters.refresh_seconds}"></noscript>'
    return _document("FIML dashboard", body, nonce=nonce, head=head)
