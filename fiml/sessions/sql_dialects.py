"""Dialect-specific SQL, loaded with the dialect that runs it.

SQLAlchemy's PostgreSQL dialect costs a SQLite process about a tenth of a second to import
(a third of what ``fiml sessions list`` spends on SQLAlchemy), so no module imports it at
its top: the statements that need a dialect's own constructs (``INSERT ... ON CONFLICT``)
are built here, from the connection's dialect name, by importing that dialect's module when
one is first built. SQLAlchemy has by then loaded the dialect to connect anyway.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

__all__ = ["dialect_insert"]


def dialect_insert(dialect: str, table: Table) -> Any:
    """An INSERT of ``table`` in the dialect named ``dialect`` (``postgresql`` or
    ``sqlite``), for its ``ON CONFLICT`` clauses, which each dialect builds its own way."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
