"""The ``fiml`` command: the root, its global options, and where each command lives."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from fiml import __version__
from fiml.cli.analytics import analytics_app
from fiml.cli.cleanup import cleanup
from fiml.cli.dashboard import dashboard
from fiml.cli.db import db_app
from fiml.cli.failures import show_tracebacks
from fiml.cli.runtime import out_console, run
from fiml.cli.serve import serve, tokens_app
from fiml.cli.sessions import sessions_app
from fiml.cli.status import status

if TYPE_CHECKING:
    from fiml.core.config import Settings

__all__ = ["app", "main", "run_serve"]

app = typer.Typer(
    name="fiml",
    help="FIML: an MCP market-data server with persistent analysis sessions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fiml {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of a failure.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """FIML: an MCP market-data server with persistent analysis sessions.

    Settings come from FIML_* environment variables (or .env); with none, sessions live in
    a SQLite file in your data directory.
    """
    show_tracebacks.set(debug)


@app.command("demo")
def demo(
    user: Annotated[str, typer.Option(help="Whose session the demo creates.")] = "demo_analyst",
) -> None:
    """Run the whole multi-query session workflow with synthetic quotes (no network)."""
    # Imported when run: the demo tracks queries as the MCP tools do, which loads the MCP
    # SDK, and the other commands start faster without it.
    from fiml.cli.demo import run_demo

    console = out_console()

    async def work(settings: Settings) -> None:
        await run_demo(settings, console=console, user_id=user)

    run(work)


app.command("serve")(serve)
app.add_typer(tokens_app)
app.add_typer(db_app)
app.add_typer(sessions_app)
app.add_typer(analytics_app)
app.command("cleanup")(cleanup)
app.command("status")(status)
app.command("dashboard")(dashboard)


def main() -> None:
    """Run the ``fiml`` command."""
    app()


def run_serve(args: Sequence[str] | None = None, *, prog_name: str = "fiml serve") -> int:
    """Run ``fiml serve ARGS`` under the name ``prog_name`` and return its exit code.

    ``python -m fiml.mcp`` runs the server through this, so both spellings share one
    command: the same options, help and defaults.
    """
    command = typer.main.get_group(app).commands["serve"]
    try:
        command.main(list(sys.argv[1:] if args is None else args), prog_name=prog_name)
    except SystemExit as exit_:  # click ends every run so, success included
        code = exit_.code
        return code if isinstance(code, int) else int(code is not None)
    return 0
