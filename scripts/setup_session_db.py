"""Create, verify or drop the FIML session schema (spec section 9).

    python scripts/setup_session_db.py create           # migrate to the newest schema
    python scripts/setup_session_db.py verify           # exit 1 unless the schema is complete
    python scripts/setup_session_db.py drop [--yes]     # asks for confirmation without --yes

The database is ``FIML_DATABASE_URL`` (or ``--database-url``); with neither, the embedded
SQLite file in the user's data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.engine import make_url

from fiml.core.config import Settings
from fiml.core.errors import ConfigurationError
from fiml.sessions.db import create_engine
from fiml.sessions.schema import drop_schema, upgrade_schema, verify_schema


async def _run(action: str, url: str) -> int:
    engine = create_engine(url)
    try:
        if action == "create":
            await upgrade_schema(engine)
            print("schema is at the newest revision")
            return 0
        if action == "drop":
            await drop_schema(engine)
            print("dropped every FIML table")
            return 0
        report = await verify_schema(engine)
    finally:
        await engine.dispose()
    print(f"revision: {report.current_revision or 'none'} (newest: {report.head_revision})")
    for table in report.missing_tables:
        print(f"missing table: {table}")
    for table, columns in report.missing_columns.items():
        print(f"missing columns in {table}: {', '.join(columns)}")
    print("schema OK" if report.ok else "schema is NOT complete; run: create")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the action; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["create", "verify", "drop"])
    parser.add_argument("--database-url", help="defaults to FIML_DATABASE_URL")
    parser.add_argument("--yes", action="store_true", help="drop without asking")
    args = parser.parse_args(argv)
    url = args.database_url or Settings().database_url
    shown = make_url(url).render_as_string(hide_password=True)
    if args.action == "drop" and not args.yes:
        if not sys.stdin.isatty():
            print("refusing to drop without --yes (no terminal to ask)", file=sys.stderr)
            return 2
        answer = input(f"Drop every FIML session table in {shown}? Type 'drop' to confirm: ")
        if answer.strip() != "drop":
            print("nothing dropped")
            return 1
    try:
        return asyncio.run(_run(args.action, url))
    except OSError as exc:
        print(f"cannot reach the database {shown}: {exc}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:  # a schema migrated by a newer FIML
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
