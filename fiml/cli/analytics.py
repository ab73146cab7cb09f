"""``fiml analytics stats|user|export``: usage statistics over every user's sessions.

Statistics cover the sessions created in the last ``--days`` days; averages, rates and
rankings describe the finished sessions that cleanup has recorded (``fiml cleanup``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fiml.cli.runtime import open_store, out_console, print_json, progress_bar, run

if TYPE_CHECKING:  # the rest loads with the store, inside the commands (see runtime)
    from rich.table import Table

    from fiml.core.config import Settings
    from fiml.sessions.analytics import RecentSession, SessionStats, UserSessionSummary

__all__ = ["analytics_app"]

analytics_app = typer.Typer(
    name="analytics",
    help="Usage statistics over recorded sessions, and exports of them.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
UserOption = Annotated[str | None, typer.Option("--user", help="Only this user's sessions.")]
TypeOption = Annotated[
    str | None,
    typer.Option("--type", help="Only sessions of this type (equity, crypto, ...)."),
]
DaysOption = Annotated[float, typer.Option(help="Sessions created in the last DAYS days.")]


def _window(days: float, user: str | None, kind: str | None) -> str:
    parts = [f"last {days:g} day{'' if days == 1 else 's'}"]
    if user is not None:
        parts.append(f"user {user}")
    if kind is not None:
        parts.append(f"type {kind}")
    return ", ".join(parts)


@analytics_app.command("stats")
def stats(
    user: UserOption = None,
    kind: TypeOption = None,
    days: DaysOption = 30,
    top: Annotated[int, typer.Option(help="Length of the rankings (1-100).")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Totals, averages, abandonment, top assets, query mix and cache hit rate."""

    async def work(settings: Settings) -> SessionStats:
        from fiml.sessions.analytics import SessionAnalytics

        async with open_store(settings) as store:
            return await SessionAnalytics(store).get_session_stats(user, kind, days, top=top)

    result = run(work)
    if as_json:
        print_json(result)
    else:
        from fiml.cli.render import stats_view

        title = f"Session statistics ({_window(days, user, kind)})"
        out_console().print(stats_view(result, title=title))


def _recent_table(summary: UserSessionSummary) -> Table:
    from rich.table import Table

    from fiml.cli.render import span_of_seconds

    table = Table(title="Recent finished sessions", title_justify="left")
    for column in ("session id", "type", "created", "duration", "queries", "ended"):
        table.add_column(column, no_wrap=column == "session id")
    for s in summary["recent_sessions"]:
        table.add_row(
            s["session_id"],
            s["session_type"],
            s["created_at"][:19].replace("T", " "),
            span_of_seconds(s["duration_seconds"]),
            str(s["total_queries"]),
            _ending(s),
        )
    if summary["skipped_records"]:
        table.caption = f"{summary['skipped_records']} unreadable records left out (see the log)"
    return table


def _ending(session: RecentSession) -> str:
    if session["completed"]:
        return "closed"
    return "abandoned" if session["abandoned"] else "expired"


@analytics_app.command("user")
def user_summary(
    user_id: Annotated[str, typer.Argument(metavar="USER", help="Whose sessions.")],
    days: DaysOption = 30,
    as_json: JsonOption = False,
) -> None:
    """One user's statistics and their ten most recent finished sessions."""

    async def work(settings: Settings) -> UserSessionSummary:
        from fiml.sessions.analytics import SessionAnalytics

        async with open_store(settings) as store:
            return await SessionAnalytics(store).get_user_session_summary(user_id, days)

    summary = run(work)
    if as_json:
        print_json(summary)
        return
    from rich.console import Group

    from fiml.cli.render import stats_view

    title = f"Session statistics ({_window(days, user_id, None)})"
    out_console().print(Group(stats_view(summary["stats"], title=title), _recent_table(summary)))


def _count_rows(format: str, document: str) -> int:
    if format == "json":
        sessions: list[Any] = json.loads(document)["sessions"]
        return len(sessions)
    return max(len(list(csv.reader(io.StringIO(document)))) - 1, 0)


@analytics_app.command("export")
def export(
    format: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")
    ] = None,
    user: UserOption = None,
    kind: TypeOption = None,
    days: DaysOption = 30,
    as_json: JsonOption = False,
) -> None:
    """Export recorded sessions as JSON (with the statistics) or CSV."""
    target = None if output is None else output.expanduser().absolute()

    async def work(settings: Settings) -> str:
        from fiml.sessions.analytics import SessionAnalytics

        async with open_store(settings) as store:
            with progress_bar(enabled=target is not None and not as_json) as bar:
                task = bar.add_task(f"exporting {format}", total=1)
                document = await SessionAnalytics(store).export_session_metrics(
                    format,
                    user_id=user,
                    session_type=kind,
                    days=days,
                    path=None if target is None else target.name,
                    directory=None if target is None else target.parent,
                )
                bar.advance(task)
        return document

    document = run(work)
    if target is None:
        typer.echo(document.rstrip("\n"))
        return
    rows = _count_rows(format, document)
    if as_json:
        print_json({"path": str(target), "format": format, "sessions": rows})
    else:
        typer.echo(f"wrote {rows} sessions as {format} to {target}")
