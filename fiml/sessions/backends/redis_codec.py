"""How a session maps onto its Redis hashes and onto the arguments of the Lua scripts.

The layout itself (key names, meta fields, script argument order) is documented in
:mod:`fiml.sessions.backends.redis_keys`; this module only converts to and from it. Times
are integer microseconds since the Unix epoch, so they round-trip exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast
from uuid import UUID

import pydantic_core

from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.base import LIST_SIZES, SessionChanges, WriteLimits
from fiml.sessions.models import (
    MAX_STATE_KEYS,
    STATE_SECTIONS,
    Session,
    queries_from_json,
    session_from_store,
    to_json,
)

__all__ = [
    "SummaryRow",
    "apply_args",
    "create_args",
    "earliest_expiry",
    "from_micros",
    "pairs",
    "session_from_parts",
    "summary_row",
    "to_micros",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: str | int) -> datetime:
    """An aware UTC datetime from microseconds since the Unix epoch."""
    return _EPOCH + _MICROSECOND * int(value)


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else from_micros(value)


def _micros_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


_dumps = to_json


def pairs(flat: list[str]) -> dict[str, str]:
    """A dict from a flat field/value list, as a script returns a hash."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


class SummaryRow(NamedTuple):
    """The columns ``sql.summaries_from_rows`` reads, taken from a meta hash."""

    id: str
    user_id: str | None
    session_type: str
    assets: list[str]
    tags: list[str]
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    closed_at: datetime | None
    archived_at: datetime | None
    total_queries: int


def summary_row(session_id: str, values: list[str | None]) -> SummaryRow:
    """A listing row from the ``META_FIELDS_FOR_SUMMARY`` of a session's meta hash."""
    user, kind, assets, tags, created, expires, accessed, closed, total = values
    return SummaryRow(
        id=session_id,
        user_id=user,
        session_type=cast(str, kind),
        assets=pydantic_core.from_json(cast(str, assets)),
        tags=pydantic_core.from_json(cast(str, tags)),
        created_at=from_micros(cast(str, created)),
        expires_at=from_micros(cast(str, expires)),
        last_accessed_at=from_micros(cast(str, accessed)),
        closed_at=_optional_time(closed),
        archived_at=None,
        total_queries=int(cast(str, total)),
    )


def _meta_items(session: Session) -> list[str | int]:
    history = session.state.history
    fields: dict[str, str | int | None] = {
        "user_id": session.user_id,
        "type": session.type.value,
        "assets": _dumps(session.assets),
        "tags": _dumps(session.tags),
        "created_at": to_micros(session.created_at),
        "expires_at": to_micros(session.expires_at),
        "last_accessed_at": to_micros(session.last_accessed_at),
        "closed_at": _micros_or_none(session.closed_at),
        "version": session.version,
        "total_queries": history.total_queries,
        "cache_hits": history.cache_hits,
        "first_query_at": _micros_or_none(history.first_query_at),
        "last_query_at": _micros_or_none(history.last_query_at),
    }
    for query_type, count in history.query_type_counts.items():
        fields[rk.QUERY_TYPE_PREFIX + query_type] = count
    return [item for name, value in fields.items() if value is not None for item in (name, value)]


def create_args(session: Session) -> list[str | int]:
    """ARGV of ``redis_keys.CREATE`` for a new session."""
    meta = _meta_items(session)
    queries = session.state.history.queries
    args: list[str | int] = [len(meta), *meta, len(queries)]
    for query in queries:
        args += [str(query.id), query.model_dump_json()]
    for section in STATE_SECTIONS:
        values: dict[str, Any] = getattr(session.state, section)
        args.append(2 * len(values))
        for key, value in values.items():
            args += [key, _dumps(value)]
    return args


def apply_args(changes: SessionChanges, now: datetime, limits: WriteLimits) -> list[str | bytes]:
    """ARGV of ``redis_keys.APPLY`` for one write: a JSON header, then the bulky values.

    Few arguments keep the client's per-argument encoding cost low: the scalars and the
    per-query fields travel in one JSON header, times as decimal strings (exact in Lua).
    """
    header: dict[str, Any] = {
        "now": str(to_micros(now)),
        "max_queries": limits.max_queries,
        "max_state_keys": MAX_STATE_KEYS,
        "max_ttl": str(limits.max_ttl // _MICROSECOND),
    }
    if changes.expected_version is not None:
        header["expected_version"] = changes.expected_version
    for name, change in (("assets", changes.assets), ("tags", changes.tags)):
        if change is not None:
            low, high = LIST_SIZES[name]
            header[name] = {
                "added": change.added,
                "removed": change.removed,
                "replace": change.replace,
                "min": low,
                "max": high,
            }
    if changes.expires_at is not None:
        header["expires_at"] = str(to_micros(changes.expires_at))
    if changes.extend_by is not None:
        header["extend_by"] = str(changes.extend_by // _MICROSECOND)
    if changes.close:
        header["close"] = 1
    if changes.end_now:
        header["end_now"] = 1
    queries = changes.new_queries
    header["queries"] = [
        [str(q.id), int(q.cache_hit), q.query_type, str(to_micros(q.timestamp))] for q in queries
    ]
    args: list[str | bytes] = ["", *(q.model_dump_json() for q in queries)]
    counts: list[int] = []
    for section in STATE_SECTIONS:
        sets = changes.set_keys.get(section) or {}
        deletes = changes.deleted_keys.get(section) or []
        counts += [len(sets), len(deletes)]
        for key, value in sets.items():
            args += [key, _dumps(value)]
        args += deletes
    if any(counts):
        header["sections"] = counts
    args[0] = pydantic_core.to_json(header)  # plain data, several times faster than json
    return args


def earliest_expiry(changes: SessionChanges, now: datetime) -> datetime | None:
    """The earliest expiry a write may set, if it may bring expiry forward at all."""
    candidates = [changes.expires_at] if changes.expires_at is not None else []
    if changes.close or changes.end_now:
        candidates.append(now)
    return min(candidates, default=None)


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
    prefix = rk.QUERY_TYPE_PREFIX
    skip = len(prefix)
    counts = {name[skip:]: int(count) for name, count in meta.items() if name.startswith(prefix)}
    history = {
        "queries": queries_from_json(queries),
        "total_queries": int(meta["total_queries"]),
        "cache_hits": int(meta["cache_hits"]),
        "query_type_counts": counts,
        "first_query_at": _optional_time(meta.get("first_query_at")),
        "last_query_at": _optional_time(meta.get("last_query_at")),
    }
    state: dict[str, Any] = {
        name: {key: pydantic_core.from_json(raw) for key, raw in values.items()} if values else {}
        for name, values in zip(STATE_SECTIONS, sections, strict=True)
    }
    state["history"] = history
    return session_from_store(
        {
            "id": session_id,
            "user_id": meta.get("user_id"),
            "type": meta["type"],
            "assets": pydantic_core.from_json(meta["assets"]),
            "tags": pydantic_core.from_json(meta["tags"]),
            "created_at": from_micros(meta["created_at"]),
            "expires_at": from_micros(meta["expires_at"]),
            "last_accessed_at": from_micros(meta["last_accessed_at"]),
            "closed_at": _optional_time(meta.get("closed_at")),
            "version": int(meta["version"]),
            "state": state,
        },
        sections=dict(zip(STATE_SECTIONS, sections, strict=True)),
        baseline=baseline,
    )
