"""``fiml status``: is the deployment ready to serve sessions, and if not, what is missing.

By default the command checks the deployment the settings describe from its own process
(:func:`fiml.sessions.health.deployment_readiness`): the store starts, each tier answers,
the schema is current, Redis persists. With ``--url`` it asks a running server's
``/readyz`` instead, which also says whether that server's job scheduler is alive. The exit
code is 0 when ready, 3 when not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from fiml.cli.failures import EXIT_UNAVAILABLE
from fiml.cli.runtime import out_console, print_json, run

if TYPE_CHECKING:
    from fiml.core.config import Settings

__all__ = ["status"]

_TIMEOUT_SECONDS = 5.0


def status(
    url: Annotated[
        str | None,
        typer.Option(help="A running server's base URL (http://host:port): ask its /readyz."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show whether the store, the schema, Redis and the job scheduler are ready."""

    async def work(settings: Settings) -> dict[str, Any]:
        if url is not None:
            return await _served_report(url)
        from fiml.sessions.health import deployment_readiness

        return dict(await deployment_readiness(settings))

    report = run(work)
    if as_json:
        print_json(report)
    else:
        _show(report)
    if not report["ready"]:
        raise typer.Exit(EXIT_UNAVAILABLE)


async def _served_report(url: str) -> dict[str, Any]:
    import httpx

    from fiml.core.errors import StorageUnavailableError

    target = url.rstrip("/") + "/readyz"
    try:
        async with httpx.AsyncClient(timeout=_TIMEOUT_SECONDS) as client:
            answer = await client.get(target)
        report: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise StorageUnavailableError("server", f"{target}: {type(exc).__name__}") from exc
    return report


def _show(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = out_console()
    table = Table("check", "ok", "details")
    for name, check in report["checks"].items():
        details = ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")
        table.add_row(name, "yes" if check["ok"] else "[red]NO[/red]", details)
    console.print(table)
    console.print("ready" if report["ready"] else "[red]not ready[/red]")
