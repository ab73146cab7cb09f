"""SQLite's hot statements run on the ``sqlite3`` connection beneath SQLAlchemy, each
compiled by SQLAlchemy once and its values converted by its columns' own types.

A tracked query on SQLite is three statements in a transaction; through SQLAlchemy Core
each costs about four times what ``sqlite3`` itself takes (the execution context, its
events, the result's machinery), which made a tracked query several times one INSERT +
commit. Here SQLAlchemy still writes the SQL (``ClauseElement.compile`` for the engine's
dialect, its positional parameters in ``SQLCompiler.positiontup``) and converts every value
both ways (``TypeEngine.bind_processor`` / ``result_processor`` for that dialect: UUIDs as
hex, UTC times, JSON through the engine's serializer), so the values stored are the ones
SQLAlchemy would store; only the execution is the driver's (``PoolProxiedConnection.
driver_connection``, inside the transaction SQLAlchemy began on that connection).
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

__all__ = ["CompiledStatement", "compiled_for", "driver_connection"]

_Processor = Callable[[Any], Any] | None


class CompiledStatement:
    """One statement compiled for one dialect, run with named values on a ``sqlite3``
    connection; rows come back as dicts of converted values."""

    def __init__(
        self,
        statement: ClauseElement,
        dialect: Dialect,
        column_keys: Iterable[str] | None = None,
    ) -> None:
        keys = None if column_keys is None else list(column_keys)
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if not isinstance(compiled, SQLCompiler):  # DDL compiles otherwise
            raise TypeError(f"not a statement of rows: {statement}")
        self.sql = str(compiled)
        names = compiled.positiontup or []
        # The statement's own values (literals, as ``func.json_object``'s keys), used when
        # a call does not name them.
        self._defaults = {name: compiled.binds[name].value for name in names}
        self._binds: list[tuple[str, _Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names
        ]
        self._columns: list[tuple[str, _Processor]] = [
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in getattr(statement, "selected_columns", None) or ()
        ]
        self._returned: list[tuple[str, _Processor]] = [
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in _returning_columns(statement)
        ]

    def rows(self, driver: Any, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run it; its rows (selected or returned columns) as dicts of converted values."""
        columns = self._columns or self._returned
        with self._as_sqlalchemy_errors():
            cursor = driver.execute(self.sql, self._bound(values))
            try:
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        return [_converted(columns, raw) for raw in fetched]

    def run(self, driver: Any, values: Mapping[str, Any]) -> int:
        """Run it (no rows read); how many rows it changed."""
        with self._as_sqlalchemy_errors():
            cursor = driver.execute(self.sql, self._bound(values))
            try:
                return int(cursor.rowcount)
            finally:
                cursor.close()

    @contextmanager
    def _as_sqlalchemy_errors(self) -> Iterator[None]:
        """The driver's errors as SQLAlchemy raises them (``DBAPIError.instance``), so that
        callers handle them as those of every other statement (``sql_faults``)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise DBAPIError.instance(
                self.sql, None, exc, sqlite3.Error, hide_parameters=True
            ) from exc

    def _bound(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        bound = []
        for name, convert in self._binds:
            value = values[name] if name in values else self._defaults[name]
            bound.append(value if convert is None else convert(value))
        return tuple(bound)


def _returning_columns(statement: ClauseElement) -> list[Any]:
    """The columns an INSERT or UPDATE returns (none for other statements)."""
    columns = getattr(statement, "returning_column_descriptions", None)
    if not columns:
        return []
    return [entry["expr"] for entry in columns]


def _converted(columns: list[tuple[str, _Processor]], raw: tuple[Any, ...]) -> dict[str, Any]:
    return {
        key: value if convert is None else convert(value)
        for (key, convert), value in zip(columns, raw, strict=True)
    }


_Key = tuple[ClauseElement, tuple[str, ...] | None]
_compiled: weakref.WeakKeyDictionary[Dialect, dict[_Key, CompiledStatement]] = (
    weakref.WeakKeyDictionary()
)


def compiled_for(
    conn: Connection, statement: ClauseElement, column_keys: Iterable[str] | None = None
) -> CompiledStatement:
    """``statement`` compiled for ``conn``'s dialect (``column_keys``: the values an INSERT
    or UPDATE sets), once per engine: pass statements built once (module constants)."""
    keys = None if column_keys is None else tuple(column_keys)
    known = _compiled.setdefault(conn.dialect, {})
    compiled = known.get((statement, keys))
    if compiled is None:
        compiled = known[(statement, keys)] = CompiledStatement(statement, conn.dialect, keys)
    return compiled


def driver_connection(conn: Connection) -> Any:
    """The ``sqlite3`` connection beneath ``conn`` (in the transaction it began)."""
    return conn.connection.driver_connection
