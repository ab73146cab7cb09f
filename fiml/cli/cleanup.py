"""``fiml cleanup``: run the session jobs once, now, in this process.

The same functions the in-process scheduler and the Celery tasks run
(:mod:`fiml.sessions.jobs`): archive expired and closed sessions (recording their
analytics facts), delete archives past the retention period, and record facts for any
archived session that has none. Every job is idempotent, so running this next to a
scheduler or a Celery worker archives and counts each session once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

from fiml.cli.failures import EXIT_FAILED, EXIT_UNAVAILABLE, fail
from fiml.cli.runtime import open_store, out_console, print_json, progress_bar, run

if TYPE_CHECKING:  # the rest loads with the store, inside the command (see runtime)
    from fiml.core.config import Settings
    from fiml.sessions.jobs import CleanupStats, JobStats

__all__ = ["cleanup"]

Step = tuple[str, "Callable[[], Awaitable[JobStats]]"]


def cleanup(
    skip_retention: Annotated[
        bool, typer.Option("--skip-retention", help="Do not delete old archives.")
    ] = False,
    skip_metrics: Annotated[
        bool, typer.Option("--skip-metrics", help="Do not backfill analytics facts.")
    ] = False,
    retention_days: Annotated[
        float | None,
        typer.Option(help="Delete archives older than this (default: the retention setting)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Archive expired and closed sessions, apply retention, and record analytics."""

    async def work(settings: Settings) -> list[JobStats]:
        from fiml.sessions.analytics import SessionAnalytics
        from fiml.sessions.jobs import run_cleanup, run_metrics, run_retention

        async with open_store(settings) as store:
            analytics = SessionAnalytics(store)
            steps: list[Step] = [
                ("archiving expired and closed sessions", lambda: run_cleanup(store, analytics))
            ]
            if not skip_retention:
                steps.append(
                    (
                        "deleting archives past retention",
                        lambda: run_retention(store, retention_days=retention_days),
                    )
                )
            if not skip_metrics:
                steps.append(("recording analytics facts", lambda: run_metrics(store, analytics)))
            results: list[JobStats] = []
            with progress_bar(enabled=not as_json) as bar:
                task = bar.add_task("session jobs", total=len(steps))
                for description, step in steps:
                    bar.update(task, description=description)
                    results.append(await step())
                    bar.advance(task)
            return results

    results = run(work)
    from fiml.cli.render import job_results_table
    from fiml.sessions.jobs import CleanupStats

    if as_json:
        print_json([r.model_dump(mode="json") for r in results])
    else:
        out_console().print(job_results_table(results))
    for stats in results:
        if isinstance(stats, CleanupStats) and not stats.ok:
            raise _incomplete(stats)


def _incomplete(stats: CleanupStats) -> typer.Exit:
    """The exit for a cleanup that left sessions behind: unavailable (3) when the archive
    could not be reached, failed (1) when sessions were quarantined."""
    if stats.failed:
        return fail(
            f"{stats.failed} session(s) could not be archived and stay where they are "
            f"(retried on the next run): {stats.error}",
            EXIT_UNAVAILABLE,
        )
    return fail(
        f"{stats.quarantined} session(s) quarantined; see `fiml sessions quarantined`",
        EXIT_FAILED,
    )
