"""How a session maps onto the rows of the ``sessions`` and ``session_queries`` tables.

A session's row holds every field of :data:`~fiml.sessions.backends.fields.FIELDS` under
its name; each query is a row of its own, numbered 1..N by ``seq``. Statements that read
many sessions at once (listings, archival's facts) select the JSON columns as text and
decode them row by row (:func:`selected`, :func:`decoded`), so that one damaged row costs
only its own session, not the whole statement.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Table, Text
from sqlalchemy import cast as sql_cast

from fiml.sessions.backends.fields import Kind, StoredField, StoredValues, session_fields
from fiml.sessions.db import EventRow, QueryRow, SessionRecord
from fiml.sessions.models import QueryRecord, Session, session_from_store

__all__ = ["E", "Q", "S", "decoded", "query_values", "selected", "session_from_row"]

S = cast(Table, SessionRecord.__table__)
Q = cast(Table, QueryRow.__table__)
E = cast(Table, EventRow.__table__)
_JSON_KINDS = {Kind.LABELS: list, Kind.COUNTS: dict, Kind.SECTION: dict}


def query_values(session_id: UUID, seq: int, query: QueryRecord) -> dict[str, Any]:
    """The ``session_queries`` row of a session's ``seq``-th query."""
    return {
        "id": query.id,
        "session_id": session_id,
        "seq": seq,
        "timestamp": query.timestamp,
        "query_type": query.query_type,
        "parameters": query.parameters,
        "result_summary": query.result_summary,
        "execution_time_ms": query.execution_time_ms,
        "cache_hit": query.cache_hit,
    }


def session_from_row(row: StoredValues, queries: list[QueryRecord]) -> Session:
    """A session (its baseline marked) from its ``sessions`` row and the queries read."""
    return session_from_store(session_fields(row, queries))


def selected(fields: Iterable[StoredField]) -> list[ColumnElement[Any]]:
    """The columns of ``fields``, those holding JSON as text (see the module docstring)."""
    return [
        sql_cast(S.c[f.name], Text).label(f.name) if f.kind in _JSON_KINDS else S.c[f.name]
        for f in fields
    ]


def decoded(row: StoredValues, fields: Sequence[StoredField]) -> dict[str, Any]:
    """The values of a row of :func:`selected` columns by name, JSON decoded (null as
    empty); a ValueError (``quarantine.UNDECODABLE``) if the JSON is damaged."""
    values = {}
    for f in fields:
        value = row[f.name]
        if f.kind in _JSON_KINDS:
            value = json.loads(value) if value else _JSON_KINDS[f.kind]()
        values[f.name] = value
    return values
