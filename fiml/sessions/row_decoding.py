"""Rows decoded one at a time, so a record damaged outside FIML costs only its own session.

A result decodes its rows with its columns' types as they are fetched, so one value that
cannot be decoded (text that is not JSON, a date that is not a date) fails the whole
statement, and every session with it. SQLite keeps whatever it is given, so there a
:class:`RowReader` selects the columns undecoded and decodes each row on its own with the
same column types; PostgreSQL checks each value against its column's type as it is
written, so its rows always decode and are selected as usual. A row that fails becomes a
:class:`SkippedRecord`, logged with its session id by :func:`report_skipped`, and the
other rows are read as usual. What decodes may still be damaged (JSON of the wrong shape):
callers check the values they use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Dialect, type_coerce
from sqlalchemy.types import NullType

__all__ = ["RowReader", "SkippedRecord", "as_stored", "report_skipped", "shown_id"]

logger = logging.getLogger("fiml.sessions.analytics")


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A stored record analytics could not read, and why; nothing else was affected.

    ``session_id`` is what the record's id column holds, which is the session's id unless
    the id itself is what was damaged.
    """

    session_id: str
    reason: str


def as_stored(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` as the driver returns it, for keys compared the way they are stored."""
    return type_coerce(column, NullType())


class RowReader:
    """Selects ``columns`` (keyed by name) and decodes each row of them on its own."""

    def __init__(self, dialect: Dialect, columns: Mapping[str, ColumnElement[Any]]) -> None:
        self._decoding = dialect.name == "sqlite"
        self.columns = [
            (as_stored(column) if self._decoding else column).label(name)
            for name, column in columns.items()
        ]
        self._steps = (
            [
                (name, column.type.dialect_impl(dialect).result_processor(dialect, None))
                for name, column in columns.items()
            ]
            if self._decoding
            else [(name, None) for name in columns]
        )

    def __call__(self, row: Sequence[Any]) -> dict[str, Any]:
        """The row's values by name; a ValueError naming the column if one is damaged."""
        decoded = {}
        for (name, process), value in zip(self._steps, row, strict=False):
            try:
                decoded[name] = value if process is None or value is None else process(value)
            # What the dialect's decoders raise for a value of the wrong kind (an int where
            # a UUID's text should be, a string that is no date, text that is no JSON).
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                raise ValueError(f"{name} cannot be decoded ({exc})") from exc
        return decoded


def shown_id(value: Any) -> str:
    """A stored session id as text: the UUID's usual form, or whatever the column holds."""
    try:
        return str(UUID(str(value)))
    except ValueError:
        return str(value)


def report_skipped(skipped: Sequence[SkippedRecord], *, doing: str) -> None:
    """Log each skipped record with its session id (``session_id`` on the log record)."""
    for record in skipped:
        logger.warning(
            "analytics skipped the record of session %s while %s: %s",
            record.session_id,
            doing,
            record.reason,
            extra={"session_id": record.session_id},
        )
