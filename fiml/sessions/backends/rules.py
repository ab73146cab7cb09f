"""The rules of one write to a session: which refusal, or which new stored values.

:func:`plan_write` decides a write (:class:`~fiml.sessions.backends.base.SessionChanges`)
from what the session stores now (:class:`StoredSession`), changing nothing itself; the
SQL backend runs it under the session's row lock and writes what it returns. The Redis
backend runs the same rules inside one Lua script (``lua/apply.lua``), since a script is
what makes a Redis write one atomic round trip; the contract suite
(``tests/sessions/test_write_rules.py``) runs a table of cases through these functions and
through every deployment and asserts the same outcome, so the two cannot drift apart.

The checks, in order; the first that fails refuses the write, and nothing changes:

1. The session takes writes: not archived (SessionArchivedError), not closed
   (SessionClosedError), not past its expiry (SessionExpiredError), and not frozen by an
   archiver (SessionArchivedError). Only Redis freezes, and only an open session's freeze
   is reported: one that is closed or expired says so instead.
2. ``expected_version``, if given, is the stored version (SessionConflictError).
3. The queries whose id is not recorded yet keep the history within ``max_queries``
   (QueryLimitExceededError); a query sent again is not recorded again.
4. Each state section the write sets keys in holds at most ``MAX_STATE_KEYS`` keys once its
   sets and deletes are merged (ContextValueError); deleting alone never grows a section.
5. ``assets`` and ``tags``, merged with the write's :class:`ListChange`, hold as many
   elements as ``LIST_SIZES`` allows (InvalidInputError naming the list).
6. A new expiry (``extend_by``, or an ``expires_at`` other than the stored one) lies after
   now and at most ``max_ttl`` from now (InvalidTTLError).

A write that passes bumps the version by one, records the new queries (the first of each
id, in order) and their counters, merges the state sections (sets, then deletes) and the
lists, sets the new expiry, closes the session (``closed_at``: now) on ``close``, brings
expiry forward to now on ``close`` or ``end_now``, and moves ``last_accessed_at`` to now
unless it is later already. With ``WriteLimits.sliding_ttl`` a write that neither closes
nor ends the session also slides its expiry (:func:`slid_expiry`): later by the time since
the last write, never past ``max_ttl`` from creation, never earlier than it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from fiml.core.errors import (
    ContextValueError,
    InvalidTTLError,
    QueryLimitExceededError,
    SessionArchivedError,
    SessionClosedError,
    SessionConflictError,
    SessionExpiredError,
)
from fiml.sessions.backends.base import (
    LIST_SIZES,
    HistoryCounters,
    ListChange,
    SessionChanges,
    WriteLimits,
    list_size_error,
)
from fiml.sessions.backends.fields import StoredValues
from fiml.sessions.models import MAX_STATE_KEYS, STATE_SECTIONS, QueryRecord

__all__ = [
    "PlannedWrite",
    "StoredSession",
    "new_expiry",
    "plan_write",
    "slid_expiry",
    "state_keys_error",
]


@dataclass(frozen=True, slots=True)
class StoredSession:
    """What a write reads of a session before it decides (fields as in ``fields.FIELDS``)."""

    version: int
    expires_at: datetime
    last_accessed_at: datetime
    created_at: datetime | None = None
    """Needed by a sliding expiry only (its cap is ``max_ttl`` from creation)."""
    closed_at: datetime | None = None
    archived_at: datetime | None = None
    total_queries: int = 0
    cache_hits: int = 0
    query_type_counts: Mapping[str, int] = field(default_factory=dict)
    first_query_at: datetime | None = None
    last_query_at: datetime | None = None
    assets: Sequence[str] = ()
    tags: Sequence[str] = ()
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each state section's keys and values (a section left out holds none)."""
    recorded_query_ids: Set[UUID] = frozenset()
    """Ids of recorded queries: at least those of the write's queries that are recorded."""
    frozen: bool = False
    """An archiver exported the session and is about to remove it (Redis only)."""

    @classmethod
    def of(
        cls, values: StoredValues, *, recorded_query_ids: Set[UUID] = frozenset()
    ) -> StoredSession:
        """The state from stored values by field name (a SQL row's mapping, say); a null
        list or dict is empty."""
        known = {name: values[name] for name in _STORED_NAMES if values.get(name) is not None}
        sections = {section: values.get(section) or {} for section in STATE_SECTIONS}
        return cls(**known, sections=sections, recorded_query_ids=recorded_query_ids)


_STORED_NAMES = tuple(
    f.name
    for f in fields(StoredSession)
    if f.name not in ("sections", "recorded_query_ids", "frozen")
)
"""The stored fields :meth:`StoredSession.of` reads by name (``fields.FIELDS``)."""


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """What a write that passed every check changes."""

    values: dict[str, Any]
    """The new value of each stored field it changes, by field name (``fields.FIELDS``)."""
    new_queries: list[QueryRecord]
    """The queries it records, in order: the first takes position ``total_queries + 1``."""
    counters: HistoryCounters


def _check_writable(session_id: UUID, stored: StoredSession, now: datetime) -> None:
    """Raise the error that says why this session no longer takes writes, if it does not."""
    if stored.archived_at is not None:
        raise SessionArchivedError(session_id)
    if stored.closed_at is not None:
        raise SessionClosedError(session_id)
    if stored.expires_at <= now:
        raise SessionExpiredError(session_id)
    if stored.frozen:
        raise SessionArchivedError(session_id)


def new_expiry(
    current: datetime, changes: SessionChanges, now: datetime, max_ttl: timedelta
) -> datetime | None:
    """The expiry a write sets, checked against the maximum TTL; None if unchanged."""
    hours = max_ttl.total_seconds() / 3600
    if changes.extend_by is not None:
        target = current + changes.extend_by
        if target - now > max_ttl:
            room = max((max_ttl - (current - now)).total_seconds() / 3600, 0.0)
            raise InvalidTTLError(
                "hours", changes.extend_by.total_seconds() / 3600, minimum=0, maximum=room
            )
        return target
    if changes.expires_at is not None and changes.expires_at != current:
        if changes.expires_at <= now or changes.expires_at - now > max_ttl:
            remaining = (changes.expires_at - now).total_seconds() / 3600
            raise InvalidTTLError("ttl_hours", round(remaining, 6), minimum=0, maximum=hours)
        return changes.expires_at
    return None


def slid_expiry(
    expires_at: datetime, last_accessed_at: datetime, now: datetime, cap: datetime
) -> datetime | None:
    """A sliding expiry: ``expires_at`` pushed later by the time since the last write, at
    most to ``cap``; None when that is not later than ``expires_at``.

    Pushing by the time since the last write, rather than setting ``now`` plus a TTL,
    needs no stored TTL: a session written once per TTL keeps the TTL it was created with
    ahead of it (plus any hours an extension gave it), as from its creation, whose time is
    its first ``last_accessed_at``.
    """
    gained = max(now - last_accessed_at, timedelta(0))
    target = min(expires_at + gained, cap)
    return target if target > expires_at else None


def _merged_list(name: str, stored: Sequence[str], change: ListChange) -> list[str]:
    """``change`` merged into the ``stored`` list (the rule is :class:`ListChange`'s);
    InvalidInputError naming the list if the result breaks its size limits."""
    removed = set(change.removed)
    merged = [] if change.replace else [x for x in stored if x not in removed]
    present = set(merged)
    merged += [x for x in dict.fromkeys(change.added) if x not in present]
    low, high = LIST_SIZES[name]
    if not low <= len(merged) <= high:
        raise list_size_error(name, len(merged))
    return merged


def state_keys_error(section: str, size: int) -> ContextValueError:
    """The refusal of a write after which ``section`` would hold ``size`` keys."""
    return ContextValueError(section, size, f"would hold more than {MAX_STATE_KEYS} keys")


def _fresh_queries(stored: StoredSession, queries: list[QueryRecord]) -> list[QueryRecord]:
    """The first query of each id the session has not recorded, in order."""
    fresh: dict[UUID, QueryRecord] = {}
    for query in queries:
        if query.id not in stored.recorded_query_ids:
            fresh.setdefault(query.id, query)
    return list(fresh.values())


def _history_values(stored: StoredSession, fresh: list[QueryRecord]) -> dict[str, Any]:
    counts = dict(stored.query_type_counts)
    for query in fresh:
        counts[query.query_type] = counts.get(query.query_type, 0) + 1
    stamps = [query.timestamp for query in fresh]
    return {
        "total_queries": stored.total_queries + len(fresh),
        "cache_hits": stored.cache_hits + sum(query.cache_hit for query in fresh),
        "query_type_counts": counts,
        "first_query_at": min([*stamps, *filter(None, [stored.first_query_at])]),
        "last_query_at": max([*stamps, *filter(None, [stored.last_query_at])]),
    }


def _merged_sections(stored: StoredSession, changes: SessionChanges) -> dict[str, Any]:
    merged_sections = {}
    for section in STATE_SECTIONS:
        sets = changes.set_keys.get(section) or {}
        deletes = changes.deleted_keys.get(section) or []
        if not sets and not deletes:
            continue
        merged = dict(stored.sections.get(section) or {})
        merged.update(sets)
        for key in deletes:
            merged.pop(key, None)
        if sets and len(merged) > MAX_STATE_KEYS:
            raise state_keys_error(section, len(merged))
        merged_sections[section] = merged
    return merged_sections


def plan_write(
    session_id: UUID,
    stored: StoredSession,
    changes: SessionChanges,
    *,
    now: datetime,
    limits: WriteLimits,
) -> PlannedWrite:
    """Decide one write: raise the refusal the checks above give, in their order, or
    return what the write changes."""
    _check_writable(session_id, stored, now)
    expected = changes.expected_version
    if expected is not None and expected != stored.version:
        raise SessionConflictError(
            session_id, expected_version=expected, actual_version=stored.version
        )
    values: dict[str, Any] = {"version": stored.version + 1}
    fresh = _fresh_queries(stored, changes.new_queries)
    if fresh:
        if stored.total_queries + len(fresh) > limits.max_queries:
            raise QueryLimitExceededError(session_id, limit=limits.max_queries)
        values.update(_history_values(stored, fresh))
    values.update(_merged_sections(stored, changes))
    for name, change, current in (
        ("assets", changes.assets, stored.assets),
        ("tags", changes.tags, stored.tags),
    ):
        if change is not None:
            values[name] = _merged_list(name, current, change)
    expiry = new_expiry(stored.expires_at, changes, now, limits.max_ttl)
    if expiry is not None:
        values["expires_at"] = expiry
    sliding = limits.sliding_ttl and not (changes.close or changes.end_now)
    if sliding and stored.created_at is not None:
        current = values.get("expires_at", stored.expires_at)
        cap = stored.created_at + limits.max_ttl
        slid = slid_expiry(current, stored.last_accessed_at, now, cap)
        if slid is not None:
            values["expires_at"] = slid
    if changes.close:
        values["closed_at"] = now
    if changes.close or changes.end_now:
        values["expires_at"] = min(values.get("expires_at", stored.expires_at), now)
    values["last_accessed_at"] = max(stored.last_accessed_at, now)
    total = values.get("total_queries", stored.total_queries)
    counters = HistoryCounters(
        total_queries=total,
        cache_hits=values.get("cache_hits", stored.cache_hits),
        version=values["version"],
        added_queries=len(fresh),
    )
    return PlannedWrite(values, fresh, counters)
