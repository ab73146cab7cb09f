"""``fiml dashboard``: the analytics dashboard in your browser, for the local user.

It opens the store the settings name (by default the embedded SQLite file), serves the
dashboard on 127.0.0.1 on a free port to the user running the command only
(:mod:`fiml.dashboard.local`), prints the URL and opens a browser on it (``--no-browser``
to leave that to you), until Ctrl-C. No token is needed, and none is put in the URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from fiml.cli.failures import EXIT_INTERRUPTED
from fiml.cli.runtime import err_console, open_store, run

if TYPE_CHECKING:
    from fiml.core.config import Settings

__all__ = ["dashboard"]


def dashboard(
    port: Annotated[
        int, typer.Option(help="Port on 127.0.0.1 (default 0: a free one).", min=0, max=65535)
    ] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL only; open no browser.")
    ] = False,
) -> None:
    """Open the analytics dashboard in a browser, for you only (local, no token)."""

    async def work(settings: Settings) -> None:
        import webbrowser

        from fiml.dashboard.local import serve_local
        from fiml.mcp.auth import local_identity
        from fiml.sessions.analytics import SessionAnalytics

        user = local_identity(settings).user_id

        def ready(url: str) -> None:
            typer.echo(url)  # stdout: the one result, for scripts
            err_console().print(f"Dashboard for {user} at {url}; Ctrl-C to stop.")
            if not no_browser:
                webbrowser.open(url)

        async with open_store(settings) as store:
            await serve_local(SessionAnalytics(store), user, port=port, ready=ready)

    try:
        run(work)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
