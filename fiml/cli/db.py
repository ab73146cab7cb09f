"""``fiml db create|upgrade|verify|drop``: the session schema, through the Alembic migrations.

The database is ``FIML_DATABASE_URL`` (default: the embedded SQLite file). These are the
same functions ``scripts/setup_session_db.py`` uses. ``fiml db upgrade`` is how a PostgreSQL
database is migrated: every other process only checks its revision and refuses one that is
behind, naming this command (unless FIML_DATABASE_AUTO_MIGRATE is set).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fiml.cli.failures import EXIT_FAILED, shown_database
from fiml.cli.runtime import confirm, out_console, print_json, run, run_sync

if TYPE_CHECKING:  # SQLAlchemy and Alembic load inside the commands (see runtime)
    from sqlalchemy.ext.asyncio import AsyncEngine

    from fiml.core.config import Settings
    from fiml.sessions.schema import SchemaReport

__all__ = ["db_app"]

db_app = typer.Typer(
    name="db",
    help="Create, upgrade, verify or drop the session schema (FIML_DATABASE_URL).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    from fiml.sessions.backends import build_sql_backend

    engine = build_sql_backend(settings).engine  # says which extra a missing driver needs
    try:
        yield engine
    finally:
        await engine.dispose()


def _done(as_json: bool, data: dict[str, Any], message: str) -> None:
    if as_json:
        print_json(data)
    else:
        typer.echo(message)


def _migrate(revision: str, as_json: bool) -> None:
    async def work(settings: Settings) -> dict[str, Any]:
        from fiml.sessions.schema import upgrade_schema
        from fiml.sessions.schema import verify_schema as inspect_schema

        async with _engine(settings) as engine:
            await upgrade_schema(engine, revision)
            report = await inspect_schema(engine)
        return {"database": shown_database(settings), "revision": report.current_revision}

    done = run(work)
    _done(as_json, done, f"{done['database']}: schema at revision {done['revision']}")


@db_app.command("create")
def create(as_json: JsonOption = False) -> None:
    """Create every table (migrate an empty or older database to the newest schema)."""
    _migrate("head", as_json)


@db_app.command("upgrade")
def upgrade(
    revision: Annotated[
        str, typer.Option(help="Alembic revision to migrate to (default: the newest).")
    ] = "head",
    as_json: JsonOption = False,
) -> None:
    """Apply the migrations up to a revision (default: the newest); how PostgreSQL is migrated."""
    _migrate(revision, as_json)


def _report_json(database: str, report: SchemaReport) -> dict[str, Any]:
    return {
        "database": database,
        "ok": report.ok,
        "current_revision": report.current_revision,
        "head_revision": report.head_revision,
        "missing_tables": report.missing_tables,
        "missing_columns": report.missing_columns,
    }


@db_app.command("verify")
def verify(as_json: JsonOption = False) -> None:
    """Check the schema is complete and at the newest revision; exit 1 if not.

    Also warns (one line on stderr) when FIML_REDIS_URL's Redis would lose the active
    sessions on a restart.
    """

    async def work(settings: Settings) -> tuple[str, SchemaReport]:
        from fiml.sessions.backends.redis_persistence import persistence_warning
        from fiml.sessions.schema import verify_schema as inspect_schema

        if (warning := await persistence_warning(settings)) is not None:
            typer.echo(warning, err=True)
        async with _engine(settings) as engine:
            return shown_database(settings), await inspect_schema(engine)

    database, report = run(work)
    if as_json:
        print_json(_report_json(database, report))
    else:
        from fiml.cli.render import key_value_table

        rows: list[tuple[str, Any]] = [
            ("database", database),
            ("revision", report.current_revision or "none"),
            ("newest revision", report.head_revision),
        ]
        rows += [("missing table", table) for table in report.missing_tables]
        rows += [
            (f"missing in {table}", ", ".join(columns))
            for table, columns in report.missing_columns.items()
        ]
        rows.append(("result", "schema OK" if report.ok else "INCOMPLETE: run `fiml db upgrade`"))
        out_console().print(key_value_table(rows, title="Session schema"))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@db_app.command("drop")
def drop(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Drop without asking.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Drop every FIML table and the migration history. Destroys all sessions."""

    if not yes:
        database = run_sync(shown_database)
        question = f"Drop every FIML table in {database}? All sessions will be lost."
        if not confirm(question):
            typer.echo("error: nothing dropped (confirm, or pass --yes)", err=True)
            raise typer.Exit(EXIT_FAILED)

    async def work(settings: Settings) -> str:
        from fiml.sessions.schema import drop_schema

        async with _engine(settings) as engine:
            await drop_schema(engine)
        return shown_database(settings)

    dropped = run(work)
    _done(as_json, {"database": dropped, "dropped": True}, f"{dropped}: every FIML table dropped")
