"""How a session maps onto its Redis hashes and onto the arguments of the CREATE script.

The layout itself (key names, meta fields) is documented in
:mod:`fiml.sessions.backends.redis_keys`; the meta hash holds the fields of
:data:`~fiml.sessions.backends.fields.META_FIELDS`, each encoded by its kind, and this
module converts to and from it. Times are integer microseconds since the Unix epoch, so
they round-trip exactly. The APPLY script's protocol is in
:mod:`~fiml.sessions.backends.redis_apply`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import pydantic_core

from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.fields import (
    META_FIELDS,
    SUMMARY_FIELDS,
    Kind,
    StoredField,
    session_fields,
    values_of,
)
from fiml.sessions.events import SessionEvent
from fiml.sessions.models import (
    STATE_SECTIONS,
    Session,
    queries_from_json,
    session_from_store,
    to_json,
)

__all__ = [
    "SUMMARY_META_NAMES",
    "create_args",
    "from_micros",
    "pairs",
    "session_from_parts",
    "stored_micros",
    "summary_values",
    "to_micros",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (value - _EPOCH) // MICROSECOND


def from_micros(value: str | int) -> datetime:
    """An aware UTC datetime from microseconds since the Unix epoch."""
    return _EPOCH + MICROSECOND * int(value)


def pairs(flat: list[str]) -> dict[str, str]:
    """A dict from a flat field/value list, as a script returns a hash."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def stored_micros(value: str | None) -> int | None:
    """A stored time in microseconds, None where it is absent or damaged."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


_ENCODE: dict[Kind, Callable[[Any], str | int]] = {
    Kind.TEXT: str,
    Kind.LABELS: to_json,
    Kind.TIME: to_micros,
    Kind.COUNT: int,
}
_DECODE: dict[Kind, Callable[[str], Any]] = {
    Kind.TEXT: str,
    Kind.LABELS: pydantic_core.from_json,
    Kind.TIME: from_micros,
    Kind.COUNT: int,
}
_SUMMARY_META = tuple(field for field in SUMMARY_FIELDS if field.meta_name is not None)
SUMMARY_META_NAMES = tuple(cast(str, field.meta_name) for field in _SUMMARY_META)
"""The meta fields a listing reads, in the order :func:`summary_values` takes them (HMGET)."""
Decoding = tuple[tuple[str, str, Callable[[str], Any], bool], ...]


def _decoding(fields: Iterable[StoredField]) -> Decoding:
    """(name, meta field, decoder, optional) of each of ``fields``."""
    return tuple((f.name, cast(str, f.meta_name), _DECODE[f.kind], f.optional) for f in fields)


_META_DECODING = _decoding(META_FIELDS)
_SUMMARY_DECODING = _decoding(_SUMMARY_META)
_META_ENCODING = tuple((f.name, cast(str, f.meta_name), _ENCODE[f.kind]) for f in META_FIELDS)


def _meta_values(meta: Mapping[str, str | None], decoding: Decoding) -> dict[str, Any]:
    """Stored values by field name from meta fields; KeyError for a required one absent."""
    values = {}
    for name, meta_name, decode, optional in decoding:
        raw = meta.get(meta_name)
        if raw is None and not optional:
            raise KeyError(meta_name)
        values[name] = None if raw is None else decode(raw)
    return values


def summary_values(session_id: str, meta: list[str | None]) -> dict[str, Any]:
    """A listing entry's values (``summaries.summaries_from_values``) from the
    :data:`SUMMARY_META_NAMES` of a session's meta hash; Redis holds no archived session."""
    values = _meta_values(dict(zip(SUMMARY_META_NAMES, meta, strict=True)), _SUMMARY_DECODING)
    values.update(id=session_id, archived_at=None)
    return values


def _meta_items(session: Session) -> list[str | int]:
    values = values_of(session)
    items: list[str | int] = []
    for name, meta_name, encode in _META_ENCODING:
        value = values[name]
        if value is not None:  # an absent field is None
            items += [meta_name, encode(value)]
    for query_type, count in values["query_type_counts"].items():
        items += [rk.QUERY_TYPE_PREFIX + query_type, count]
    return items


def create_args(
    session: Session, events: Sequence[SessionEvent] = (), indexed_assets: Sequence[str] = ()
) -> list[str | int]:
    """ARGV of ``redis_keys.CREATE`` for a new session, whose user's asset indexes hold
    ``indexed_assets``, and its first timeline events."""
    meta = _meta_items(session)
    queries = session.state.history.queries
    args: list[str | int] = [len(meta), *meta, len(queries)]
    for query in queries:
        args += [str(query.id), query.model_dump_json()]
    for section in STATE_SECTIONS:
        values: dict[str, Any] = getattr(session.state, section)
        args.append(2 * len(values))
        for key, value in values.items():
            args += [key, to_json(value)]
    args += [len(indexed_assets), *indexed_assets]
    args += [event.to_json() for event in events]
    return args


def session_from_parts(
    session_id: UUID,
    meta: dict[str, str],
    queries: list[str],
    sections: list[dict[str, str]],
    *,
    baseline: bool = True,
) -> Session:
    """Rebuild a session from its meta hash, query JSON and state-section hashes (see
    ``models.session_from_store`` for ``baseline``)."""
    values = _meta_values(meta, _META_DECODING)
    prefix = rk.QUERY_TYPE_PREFIX
    skip = len(prefix)
    values["id"] = session_id
    values["query_type_counts"] = {
        name[skip:]: int(count) for name, count in meta.items() if name.startswith(prefix)
    }
    raw_sections = dict(zip(STATE_SECTIONS, sections, strict=True))
    for name, section in raw_sections.items():
        values[name] = {key: pydantic_core.from_json(raw) for key, raw in section.items()}
    return session_from_store(
        session_fields(values, queries_from_json(queries)),
        sections=raw_sections,
        baseline=baseline,
    )
