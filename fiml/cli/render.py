"""Rich renderings of sessions, queries, statistics and job results, for people.

``fiml`` and ``fiml demo`` print through these, so a session looks the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fiml.sessions.models import QueryRecord, Session, SessionStatus, SessionSummary
from fiml.sessions.quarantine import QuarantinedSession

__all__ = [
    "STATUS_STYLES",
    "job_results_table",
    "key_value_table",
    "queries_table",
    "session_details",
    "sessions_table",
    "span",
    "span_of_seconds",
    "stats_view",
    "status_text",
    "when",
]

STATUS_STYLES = {
    SessionStatus.ACTIVE: "green",
    SessionStatus.CLOSED: "yellow",
    SessionStatus.EXPIRED: "red",
    SessionStatus.ARCHIVED: "dim",
}
_JOB_FIELDS = {"job", "started_at", "duration_seconds", "skipped", "reason"}


def when(moment: datetime | None) -> str:
    """A timestamp for people, in UTC to the second; ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(length: timedelta) -> str:
    """A duration for people: ``2d 3h``, ``1h 59m``, ``4m 10s``, ``12s``."""
    seconds = max(int(length.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def span_of_seconds(seconds: float) -> str:
    """A number of seconds as a duration for people (see :func:`span`)."""
    return span(timedelta(seconds=seconds))


def status_text(status: SessionStatus) -> Text:
    """A session's status, coloured."""
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def sessions_table(sessions: Sequence[SessionSummary], *, title: str) -> Table:
    """One row per session: id, type, status, assets, queries and lifecycle times."""
    table = Table(title=title, title_justify="left")
    table.add_column("session id", no_wrap=True, min_width=36)
    table.add_column("type")
    table.add_column("status")
    table.add_column("assets")
    table.add_column("queries", justify="right")
    table.add_column("created")
    table.add_column("expires")
    for s in sessions:
        table.add_row(
            Text(str(s.id)),
            Text(s.type.value),
            status_text(s.status),
            Text(", ".join(s.assets)),
            Text(str(s.total_queries)),
            Text(when(s.created_at)),
            Text(when(s.expires_at)),
        )
    return table


def queries_table(queries: Sequence[QueryRecord], *, title: str, first_number: int = 1) -> Table:
    """One row per query: when, type, parameters, result summary, cache hit, time taken."""
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("time")
    table.add_column("type")
    table.add_column("parameters")
    table.add_column("result")
    table.add_column("cache", justify="center")
    table.add_column("ms", justify="right")
    for number, q in enumerate(queries, start=first_number):
        cells = (
            str(number),
            q.timestamp.astimezone(UTC).strftime("%H:%M:%S"),
            q.query_type,
            json.dumps(q.parameters, separators=(",", ":")),
            q.result_summary or "-",
            "hit" if q.cache_hit else "miss",
            "-" if q.execution_time_ms is None else f"{q.execution_time_ms:.1f}",
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


def key_value_table(rows: Iterable[tuple[str, Any]], *, title: str | None = None) -> Table:
    """A two-column table of labelled values."""
    table = Table(title=title, title_justify="left", show_header=False, min_width=len(title or ""))
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    return table


def _state_rows(session: Session) -> list[tuple[str, Any]]:
    state = session.state
    sections = {
        "context": state.context,
        "preferences": state.preferences,
        "intermediate results": state.intermediate_results,
        "metadata": state.metadata,
    }
    return [(name, json.dumps(values, indent=1)) for name, values in sections.items() if values]


def session_details(session: Session) -> RenderableType:
    """Everything about one session: lifecycle, counters, state and its loaded queries."""
    history = session.state.history
    remaining = span(session.time_remaining) if session.status is SessionStatus.ACTIVE else "-"
    overview = key_value_table(
        [
            ("session id", str(session.id)),
            ("user", session.user_id or "-"),
            ("type", session.type.value),
            ("status", status_text(session.status)),
            ("assets", ", ".join(session.assets)),
            ("tags", ", ".join(session.tags) or "-"),
            ("created", when(session.created_at)),
            ("last access", when(session.last_accessed_at)),
            ("expires", f"{when(session.expires_at)} (remaining: {remaining})"),
            ("closed", when(session.closed_at)),
            ("archived", when(session.archived_at)),
            ("queries", history.total_queries),
            ("cache hit rate", f"{history.cache_hit_rate:.0%}"),
            ("query types", _counts(history.get_query_types_summary())),
            *_state_rows(session),
        ],
        title=f"Session {session.id}",
    )
    shown = history.queries
    first = history.total_queries - len(shown) + 1
    title = f"Recent queries ({len(shown)} of {history.total_queries})"
    return Group(overview, queries_table(shown, title=title, first_number=first))


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "-"


def stats_view(stats: Mapping[str, Any], *, title: str) -> RenderableType:
    """Session statistics: totals, averages, rates, rankings and distributions."""
    overview = key_value_table(
        [
            ("sessions", stats["total_sessions"]),
            ("  active", stats["active_sessions"]),
            ("  finished (archived)", stats["archived_sessions"]),
            ("queries", stats["total_queries"]),
            ("avg duration", span_of_seconds(stats["avg_duration_seconds"])),
            ("avg queries/session", f"{stats['avg_queries_per_session']:.1f}"),
            ("abandonment rate", f"{stats['abandonment_rate']:.0%}"),
            ("cache hit rate", f"{stats['cache_hit_rate']:.0%}"),
            ("top assets", _counts({a["asset"]: a["count"] for a in stats["top_assets"]})),
            ("query types", _counts(stats["query_type_distribution"])),
            ("session types", _counts(stats["session_type_breakdown"])),
            ("popular tags", _counts({t["tag"]: t["count"] for t in stats["popular_tags"]})),
        ],
        title=title,
    )
    message = stats.get("message")
    return Group(overview, Text(str(message), style="italic")) if message else overview


def _job_result(stats: BaseModel) -> str:
    if getattr(stats, "skipped", False):
        return f"skipped: {getattr(stats, 'reason', None) or 'no reason given'}"
    counts = {k: v for k, v in stats.model_dump().items() if k not in _JOB_FIELDS and v is not None}
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()) or "done"


def quarantine_table(entries: Sequence[QuarantinedSession]) -> Table:
    """One row per quarantined session: whose, why, since when, how many attempts."""
    table = Table(title="Quarantined sessions", title_justify="left")
    for column in ("session", "user", "reason", "first failed", "last failed", "attempts"):
        table.add_column(column, justify="right" if column == "attempts" else "left")
    for entry in entries:
        table.add_row(
            Text(str(entry.session_id)),
            Text(entry.user_id or "-"),
            Text(entry.reason),
            Text(when(entry.first_failed_at)),
            Text(when(entry.last_failed_at)),
            Text(str(entry.attempts)),
        )
    return table


def job_results_table(results: Sequence[BaseModel]) -> Table:
    """One row per job run: what it did and how long it took."""
    table = Table(title="Session jobs", title_justify="left")
    table.add_column("job")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for stats in results:
        job = str(getattr(stats, "job", type(stats).__name__))
        seconds = f"{float(getattr(stats, 'duration_seconds', 0.0)):.3f}"
        table.add_row(Text(job), Text(_job_result(stats)), Text(seconds))
    return table
