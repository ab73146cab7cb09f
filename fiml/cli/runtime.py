"""What every command shares: settings, running async work, the store, and output channels.

Results go to stdout (tables for people, ``--json`` for scripts); progress bars, prompts
and errors go to stderr, so ``fiml ... --json | jq`` always sees clean JSON.

The CLI's modules import at their top only what declaring the commands takes (typer, a
few standard modules): the settings, asyncio, the store and its backends, rich's
renderables and the MCP SDK load inside the commands that use them, so that ``fiml
--help`` and each command start without the rest (tests/cli/test_startup.py checks it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from fiml.cli.failures import reported_failures
from fiml.core.audit import acting_as

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from fiml.core.config import Settings
    from fiml.sessions.store import SessionStore

__all__ = [
    "confirm",
    "err_console",
    "open_store",
    "out_console",
    "print_json",
    "progress_bar",
    "run",
    "run_sync",
]

T = TypeVar("T")


def out_console() -> Console:
    """The console for results (stdout)."""
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    """The console for progress and notes (stderr)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Write ``data`` to stdout as indented JSON (datetimes and UUIDs as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def run(work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Load the settings and run ``work(settings)`` to completion; failures become one line."""
    import asyncio

    from fiml.core.config import Settings

    with reported_failures() as report, acting_as(_operator()):
        report.settings = Settings()
        _audit_to(report.settings)
        return asyncio.run(work(report.settings))


def run_sync(work: Callable[[Settings], T]) -> T:
    """Like :func:`run` for work that needs no event loop (token files, the server)."""
    from fiml.core.config import Settings

    with reported_failures() as report, acting_as(_operator()):
        report.settings = Settings()
        _audit_to(report.settings)
        return work(report.settings)


def _audit_to(settings: Settings) -> None:
    if settings.audit_log_file is not None:
        from fiml.core.audit import write_audit_to

        write_audit_to(settings.audit_log_file)


def _operator() -> str:
    """The audit trail's actor for a command: ``cli:`` and the OS user running it."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SessionStore]:
    """An initialized store for the settings, shut down when the block ends."""
    from fiml.sessions.store import SessionStore

    store = SessionStore(settings)
    try:
        await store.initialize()
        yield store
    finally:
        await store.shutdown()


def progress_bar(*, enabled: bool = True) -> Progress:
    """A progress bar on stderr; hidden when stderr is not a terminal or output is JSON."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    console = err_console()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


def confirm(question: str) -> bool:
    """Ask ``question`` on stderr; False when declined or when there is no answer."""
    try:
        answer = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer at all: end of input, or Ctrl-C
        answer = False
    if not sys.stdin.isatty():
        typer.echo("", err=True)  # the answer was not echoed, so end the prompt's line
    return answer
