"""The fields a session is stored as, declared once for every backend.

A stored session is one record of fields (a row of the ``sessions`` table, the ``meta``
hash of a Redis session), its queries and its four state sections. Each
:class:`StoredField` names one stored value, says where it lives in a
:class:`~fiml.sessions.models.Session` (``path``) and what kind of value it is. From
:data:`FIELDS` follow the SQL backend's row values, the Redis meta hash's fields and their
encoding (:mod:`~fiml.sessions.backends.redis_codec`), the write rules' view of a session
(:mod:`~fiml.sessions.backends.rules`) and the listing entries
(:mod:`~fiml.sessions.backends.summaries`). The ``sessions`` table itself
(:class:`fiml.sessions.db.SessionRecord`) stays declared in SQLAlchemy's terms, as the
frozen migrations that create it are; the schema tests check that it holds exactly these
fields, each of its kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from operator import attrgetter
from typing import Any

from fiml.sessions.models import STATE_SECTIONS, QueryRecord, Session

__all__ = [
    "FIELDS",
    "META_FIELDS",
    "SUMMARY_FIELDS",
    "Kind",
    "StoredField",
    "StoredValues",
    "by_name",
    "session_fields",
    "values_of",
]


class Kind(Enum):
    """What a stored value is; each backend encodes each kind its own way."""

    ID = "id"
    """The session's UUID: the SQL key; on Redis it is in the key names."""
    TEXT = "text"
    LABELS = "labels"
    """A list of strings: JSON on both backends."""
    TIME = "time"
    """An aware UTC datetime; Redis keeps integer microseconds since the epoch."""
    COUNT = "count"
    COUNTS = "counts"
    """Counts by name: JSON in SQL, one ``qt:<name>`` field each in the Redis meta hash."""
    SECTION = "section"
    """A state section (key -> JSON value): JSON in SQL, a hash of its own on Redis."""


@dataclass(frozen=True, slots=True)
class StoredField:
    """One stored value of a session."""

    name: str
    """Its column in the ``sessions`` table, and its name everywhere a backend passes it."""
    kind: Kind
    path: tuple[str, ...]
    """Attribute names leading to it from a :class:`Session`."""
    optional: bool = False
    """Whether it may be absent (None): Redis then leaves its meta field out."""
    meta_name: str | None = None
    """Its field in the Redis meta hash; None where Redis keeps it elsewhere or not at all."""


def _field(name: str, kind: Kind, *path: str, optional: bool = False) -> StoredField:
    """A field of the meta hash under its own name (``path`` defaults to the name)."""
    return StoredField(name, kind, path or (name,), optional, name)


FIELDS: tuple[StoredField, ...] = (
    StoredField("id", Kind.ID, ("id",)),  # Redis: in the key names
    _field("user_id", Kind.TEXT, optional=True),
    StoredField("session_type", Kind.TEXT, ("type",), meta_name="type"),
    _field("assets", Kind.LABELS),
    _field("tags", Kind.LABELS),
    _field("created_at", Kind.TIME),
    _field("expires_at", Kind.TIME),
    _field("last_accessed_at", Kind.TIME),
    _field("closed_at", Kind.TIME, optional=True),
    StoredField("archived_at", Kind.TIME, ("archived_at",), optional=True),  # never in Redis
    _field("version", Kind.COUNT),
    _field("total_queries", Kind.COUNT, "state", "history", "total_queries"),
    _field("cache_hits", Kind.COUNT, "state", "history", "cache_hits"),
    StoredField(
        "query_type_counts", Kind.COUNTS, ("state", "history", "query_type_counts")
    ),  # Redis: qt:<query type> fields
    _field("first_query_at", Kind.TIME, "state", "history", "first_query_at", optional=True),
    _field("last_query_at", Kind.TIME, "state", "history", "last_query_at", optional=True),
    *(StoredField(section, Kind.SECTION, ("state", section)) for section in STATE_SECTIONS),
)
"""Every stored field, in the order of the ``sessions`` table's columns."""

by_name = {field.name: field for field in FIELDS}
META_FIELDS = tuple(field for field in FIELDS if field.meta_name is not None)
"""The fields of the Redis meta hash, apart from the query-type counts and ``frozen``."""
SUMMARY_FIELDS = tuple(
    by_name[name]
    for name in (
        "id",
        "user_id",
        "session_type",
        "assets",
        "tags",
        "created_at",
        "expires_at",
        "last_accessed_at",
        "closed_at",
        "archived_at",
        "total_queries",
    )
)
"""What a listing entry (``SessionSummary``) is made of; no history, no state."""

StoredValues = Mapping[Any, Any]
"""Stored values by field name: a dict, or a SQL row's mapping (which takes its columns as
keys as well, hence not ``Mapping[str, Any]``)."""
_EMPTY: dict[Kind, Callable[[], Any]] = {Kind.LABELS: list, Kind.COUNTS: dict, Kind.SECTION: dict}
_READERS = tuple((field.name, attrgetter(".".join(field.path))) for field in FIELDS)
_TEXT_NAMES = tuple(field.name for field in FIELDS if field.kind is Kind.TEXT)
_PLACES = tuple(
    (field.name, field.path[:-1], field.path[-1], _EMPTY.get(field.kind)) for field in FIELDS
)


def values_of(session: Session) -> dict[str, Any]:
    """Every stored field's value, by name (the session's own lists and dicts: callers
    encode or copy them before the session can change)."""
    values = {name: read(session) for name, read in _READERS}
    for name in _TEXT_NAMES:  # the session type is an enum of strings: its plain value
        if values[name] is not None:
            values[name] = str(values[name])
    return values


def session_fields(values: StoredValues, queries: list[QueryRecord]) -> dict[str, Any]:
    """The nested fields that ``models.session_from_store`` takes, from stored values by
    name: an absent optional field is None, an absent (or null) list or dict is empty."""
    history: dict[str, Any] = {"queries": queries}
    state: dict[str, Any] = {"history": history}
    nested: dict[str, Any] = {"state": state}
    targets = {(): nested, ("state",): state, ("state", "history"): history}
    for name, parents, leaf, empty in _PLACES:
        value = values.get(name)
        targets[parents][leaf] = empty() if value is None and empty is not None else value
    return nested
