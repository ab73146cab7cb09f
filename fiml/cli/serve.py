"""``fiml serve`` (the MCP server) and ``fiml tokens add|list|revoke`` (its bearer tokens).

``fiml serve`` runs :func:`fiml.mcp.server.run_server`; ``python -m fiml.mcp`` is this same
command under another name (:func:`fiml.cli.app.run_serve`). Token files are read and
written with :class:`fiml.mcp.auth.TokenFile`. The MCP SDK is imported only when these
commands run, so the rest of the CLI starts quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fiml.cli.failures import EXIT_FAILED, EXIT_INTERRUPTED, fail
from fiml.cli.runtime import out_console, print_json, run_sync
from fiml.core.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    from fiml.core.config import Settings
    from fiml.mcp.auth import Role, TokenFile

__all__ = ["serve", "tokens_app"]

TokensOption = Annotated[
    Path | None,
    typer.Option("--tokens", help="Token file (default: FIML_MCP_TOKENS_FILE)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def serve(
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP, not stdio.")] = False,
    host: Annotated[str, typer.Option(help="HTTP address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    stateless: Annotated[
        bool,
        typer.Option(
            "--stateless",
            help="Stateless HTTP, for several processes behind a load balancer.",
        ),
    ] = False,
    tokens: TokensOption = None,
    jobs: Annotated[
        bool | None,
        typer.Option(
            "--jobs/--no-jobs",
            help="Run cleanup, retention and metrics in this process "
            "(default: when no Celery broker is set).",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Serve synthetic quotes (FIML_MARKET_PROVIDER).")
    ] = False,
    sse: Annotated[
        bool,
        typer.Option(
            "--sse", help="HTTP: answer each call as a server-sent event stream, not JSON."
        ),
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="HTTP: log one line per request.")
    ] = False,
) -> None:
    """Run the MCP server: stdio for one local user, or HTTP with bearer tokens.

    Warns (one line on stderr) when FIML_REDIS_URL's Redis would lose the active sessions
    on a restart.
    """

    def work(settings: Settings) -> None:
        from fiml.mcp.server import run_server

        if offline:
            settings = settings.model_copy(update={"market_provider": "offline"})
        try:
            run_server(
                settings,
                transport="http" if http else "stdio",
                host=host,
                port=port,
                stateless=stateless,
                tokens_file=tokens,
                jobs=jobs,
                warn=_warn,
                json_response=not sse,
                access_log=access_log,
            )
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None

    run_sync(work)


def _warn(line: str) -> None:
    typer.echo(line, err=True)  # stderr: stdout is the stdio transport


tokens_app = typer.Typer(
    name="tokens",
    help="Bearer tokens of the HTTP transport: a file of SHA-256 hashes, never the tokens.",
    no_args_is_help=True,
)


def _tokens_path(settings: Settings, tokens: Path | None) -> Path:
    path = tokens or settings.mcp_tokens_file
    if path is None:
        raise ConfigurationError("no token file: pass --tokens FILE or set FIML_MCP_TOKENS_FILE")
    return path


def _token_file(path: Path, *, create: bool = False) -> TokenFile:
    from fiml.mcp.auth import TokenFile

    return TokenFile.load_or_empty(path) if create else TokenFile.load(path)


def _role(value: str) -> Role:
    if value == "admin":
        return "admin"
    if value == "user":
        return "user"
    raise InvalidInputError("role", value, "must be 'user' or 'admin'")


@tokens_app.command("add")
def add_token(
    user: Annotated[str, typer.Argument(metavar="USER", help="Who the token identifies.")],
    role: Annotated[str, typer.Option(help="user, or admin (analytics across users).")] = "user",
    tokens: TokensOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token for USER; it is printed once (stdout) and only its hash is kept."""

    def work(settings: Settings) -> tuple[Path, str]:
        path = _tokens_path(settings, tokens)
        file = _token_file(path, create=True)
        token = file.add_token(user, _role(role))
        file.save(path)
        return path, token

    path, token = run_sync(work)
    if as_json:
        print_json({"user": user, "role": role, "token": token, "tokens_file": str(path)})
        return
    typer.echo(token)
    typer.echo(f"token for {user} ({role}) added to {path}; it is not stored, keep it", err=True)


@tokens_app.command("list")
def list_tokens(tokens: TokensOption = None, as_json: JsonOption = False) -> None:
    """Who holds a token, and with which role (hashes shortened)."""

    def work(settings: Settings) -> tuple[Path, list[dict[str, Any]]]:
        path = _tokens_path(settings, tokens)
        return path, [entry.to_json() for entry in _token_file(path).entries]

    path, entries = run_sync(work)
    if as_json:
        print_json(entries)
        return
    from rich.table import Table

    table = Table(title=f"Tokens in {path}", title_justify="left")
    for column in ("user", "role", "sha256"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry["user"], entry["role"], entry["sha256"][:12] + "...")
    out_console().print(table)


@tokens_app.command("revoke")
def revoke_tokens(
    user: Annotated[str, typer.Argument(metavar="USER", help="Whose tokens to revoke.")],
    tokens: TokensOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove every token of USER from the token file."""

    def work(settings: Settings) -> tuple[Path, int]:
        path = _tokens_path(settings, tokens)
        file = _token_file(path)
        kept = [entry for entry in file.entries if entry.user_id != user]
        removed = len(file.entries) - len(kept)
        if removed:
            file.entries = kept
            file.save(path)
        return path, removed

    path, removed = run_sync(work)
    if not removed:
        raise fail(f"no token of {user} in {path}", EXIT_FAILED)
    if as_json:
        print_json({"user": user, "revoked": removed, "tokens_file": str(path)})
    else:
        typer.echo(f"revoked {removed} token(s) of {user} in {path}")
