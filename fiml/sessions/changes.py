"""What a write changes: the caller's edits turned into the smallest :class:`SessionChanges`.

:func:`changes_since_read` compares an edited :class:`~fiml.sessions.models.Session` with
what the store handed out (its baseline): only new queries, state keys whose JSON changed
and list elements added or removed are written, so concurrent writers never lose each
other's work. :func:`state_changes` builds the write that sets state keys without reading
the session first. Everything that is written is checked against the limits first; a bad
value is an InvalidInputError (or ContextValueError) naming the field, and nothing is
written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions.backends.base import HistoryCounters, ListChange, SessionChanges
from fiml.sessions.limits import (
    MAX_ASSETS,
    MAX_STATE_KEYS,
    MAX_TAGS,
    check_count,
    check_query,
    check_state_key,
    checked_labels,
    checked_state_value,
    to_json,
)
from fiml.sessions.models import (
    STATE_SECTIONS,
    AnalysisHistory,
    Baseline,
    QueryRecord,
    Session,
    SessionState,
    utcnow,
)

__all__ = ["changes_since_read", "rebase", "state_changes"]

_MAX_VERSION = 2**63 - 1


def _state_of(session: Session) -> SessionState:
    """The session's state, checked to be one: its attributes can be replaced in place."""
    state = session.state
    if not isinstance(state, SessionState) or not isinstance(state.history, AnalysisHistory):
        raise InvalidInputError("session.state", state, "must be a SessionState with a history")
    return state


def _changed_values(section: str, current: Any, before: dict[str, str]) -> dict[str, Any]:
    """The keys whose JSON differs from the baseline's, with JSON copies of their values.

    Only those are checked, key and value: an unchanged value is what the store already
    holds, so it was checked when it was written. Anything else in the section (a key of
    any type, a value edited in place) is checked as the store would write it.
    """
    if not isinstance(current, dict):
        raise ContextValueError(section, current, "must be an object of keys to values")
    if len(current) > MAX_STATE_KEYS:
        raise ContextValueError(section, len(current), f"holds more than {MAX_STATE_KEYS} keys")
    sets: dict[str, Any] = {}
    for key, value in current.items():
        if isinstance(key, str) and key in before:
            try:
                if to_json(value) == before[key]:
                    continue
            except (TypeError, ValueError, RecursionError):
                pass  # checked_state_value below raises the error that names the field
        sets[key] = checked_state_value(section, key, value)
    return sets


def _section_changes(session: Session, changes: SessionChanges) -> None:
    base = session.baseline
    state = _state_of(session)
    for section in STATE_SECTIONS:
        current = getattr(state, section)
        before = base.sections[section] if base else {}
        sets = _changed_values(section, current, before)
        deletes = [k for k in before if k not in current]
        if sets:
            changes.set_keys[section] = sets
        if deletes:
            changes.deleted_keys[section] = deletes


def _new_queries(session: Session, base: Baseline | None) -> list[QueryRecord]:
    """The queries the store has not seen with this session, each checked field by field."""
    queries = _state_of(session).history.queries
    if not isinstance(queries, list):
        raise InvalidInputError("session.state.history.queries", queries, "must be a list")
    known = frozenset(base.query_ids) if base is not None else frozenset()
    new = []
    for query in queries:
        if not isinstance(query, QueryRecord):
            raise InvalidInputError("query", query, "must be a QueryRecord")
        query_id = getattr(query, "id", None)
        if not isinstance(query_id, UUID) or query_id not in known:
            check_query(query)  # raises for an id that is not a UUID
            new.append(query)
    return new


def _expiry_changes(
    session: Session, base: Baseline | None, changes: SessionChanges, now: datetime
) -> None:
    """A later expiry extends the session; one at or before ``now`` ends it now, as the
    original store did (it is how callers end a session early); any other is set as is."""
    expires_at = session.expires_at
    if not isinstance(expires_at, datetime) or expires_at.utcoffset() is None:
        raise InvalidInputError("expires_at", expires_at, "must be a timezone-aware datetime")
    if base is not None and expires_at > base.expires_at:
        changes.extend_by = expires_at - base.expires_at
    elif base is None or expires_at != base.expires_at:
        if expires_at <= now:
            changes.end_now = True
        else:
            changes.expires_at = expires_at


def _labels(session: Session) -> tuple[list[str], list[str]]:
    """The session's assets and tags as they are now (edited in place or not), each label
    checked and normalized; how many there may be is checked after the merge with
    concurrent writes (a stale copy may hold fewer or more than the merged result)."""
    return checked_labels("assets", session.assets), checked_labels("tags", session.tags)


def _adopt_labels(session: Session, assets: list[str], tags: list[str]) -> None:
    """After a write, the session holds its lists normalized as the store wrote them."""
    if assets != session.assets and 1 <= len(assets) <= MAX_ASSETS:
        session.assets = assets
    if tags != session.tags and len(tags) <= MAX_TAGS:
        session.tags = tags


def changes_since_read(
    session: Session, *, strict: bool, now: datetime | None = None
) -> SessionChanges:
    """What the caller changed on ``session`` since the store last handed it out, checked
    against the limits: raises InvalidInputError (or ContextValueError) naming the field.

    ``now`` is the time the write happens at (default: the system's), which decides
    whether a new expiry ends the session.
    """
    base = session.baseline
    changes = SessionChanges()
    changes.new_queries = _new_queries(session, base)
    _section_changes(session, changes)
    assets, tags = _labels(session)
    changes.assets = ListChange.between(base.assets if base else None, assets)
    changes.tags = ListChange.between(base.tags if base else None, tags)
    _expiry_changes(session, base, changes, utcnow() if now is None else now)
    if strict:
        changes.expected_version = check_count(
            "session.version", session.version, minimum=0, maximum=_MAX_VERSION
        )
    return changes


def state_changes(
    *,
    context: dict[str, Any] | None,
    preferences: dict[str, Any] | None,
    intermediate_results: dict[str, Any] | None,
    remove_context: Sequence[str],
) -> SessionChanges:
    """The write that sets these state keys and removes ``remove_context``'s, checked."""
    changes = SessionChanges()
    for section, values in (
        ("context", context),
        ("preferences", preferences),
        ("intermediate_results", intermediate_results),
    ):
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ContextValueError(section, values, "must be an object of keys to values")
        if len(values) > MAX_STATE_KEYS:
            raise ContextValueError(section, len(values), f"more than {MAX_STATE_KEYS} keys")
        changes.set_keys[section] = {
            key: checked_state_value(section, key, value) for key, value in values.items()
        }
    if not isinstance(remove_context, list | tuple):
        raise InvalidInputError("remove_context", remove_context, "must be a list of keys")
    removed = list(dict.fromkeys(check_state_key("remove_context", k) for k in remove_context))
    if len(removed) > MAX_STATE_KEYS:  # no section holds more
        raise ContextValueError("remove_context", len(removed), f"more than {MAX_STATE_KEYS} keys")
    if removed:
        changes.deleted_keys["context"] = removed
    if changes.is_empty():
        raise InvalidInputError("state", None, "nothing to update")
    return changes


def rebase(
    session: Session, changes: SessionChanges, counters: HistoryCounters, *, now: datetime
) -> None:
    """After ``changes`` were written at ``now``, ``session`` holds what the store holds:
    its lists normalized, its counters and version, and a baseline marked on them."""
    _adopt_labels(session, *_labels(session))
    if changes.end_now:
        session.expires_at = now  # what the backend stored: the session ended now
    history = session.state.history
    history.total_queries = counters.total_queries
    history.cache_hits = counters.cache_hits
    session.version = counters.version
    session.mark_baseline()
