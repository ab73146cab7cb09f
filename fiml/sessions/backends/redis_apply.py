"""The protocol of the APPLY script (``lua/apply.lua``): its arguments, and its reply.

The script decides and makes one write to a session by the rules of
:mod:`~fiml.sessions.backends.rules` (the contract suite checks that it does); this module
builds what it takes from a :class:`~fiml.sessions.backends.base.SessionChanges` and turns
what it returns into the write's counters or into the rules' own refusal.

KEYS are the session's keys in :class:`~fiml.sessions.backends.redis_keys.SessionKeys`
order: meta, queries, qids, the four state-section hashes, the timeline list, then the
indexed assets.

``ARGV[1]`` is a JSON object, the write's header. Times and durations in it are decimal
strings of microseconds, exact in Lua, where a JSON number is a double:

- always: ``now``, ``max_ttl`` (times), ``max_queries``, ``max_state_keys`` (numbers),
  ``queries``: one ``[id, cache_hit 0|1, query_type, timestamp]`` per new query (maybe none);
- when set: ``expected_version`` (a number), ``expires_at``, ``extend_by`` (times),
  ``close``, ``end_now``, ``sliding`` (1: the expiry slides, ``rules.slid_expiry``);
- when the write edits the list: ``assets``, ``tags``: ``{added, removed, replace, min,
  max}``, the :class:`~fiml.sessions.backends.base.ListChange` and the sizes the merged
  list must stay within;
- when the write brings assets (added ones, its queries' symbols): ``index``, those assets;
- when the write changes state keys: ``sections``: per section, in ``STATE_SECTIONS``
  order, how many keys it sets and how many it deletes (eight numbers);
- when it changes context or preferences: ``state_events``, how many timeline events
  that makes (:func:`~fiml.sessions.events.state_events`).

``ARGV[2 ..]``: each new query's JSON, in order (what the queries list holds); then per
state section its key/JSON pairs to set, then its keys to delete; then the state events'
JSON; then one timeline event per new query (the script appends those of the queries it
records, in the same run as the write itself).

The reply is ``{'ok', total_queries, cache_hits, version, expires_at, queries added, user id
('' for none), created_at, the assets of ``index`` its user's asset indexes lack}`` or a
refusal: ``{'not_found'}``, ``{'archived'}``, ``{'closed'}``, ``{'expired'}``,
``{'conflict', stored version}``, ``{'limit'}``, ``{'state_keys', section 1-4, keys after
the merge}``, ``{'list_size', list name, size after the merge}``, ``{'ttl', stored
expires_at}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

import pydantic_core

from fiml.core.errors import (
    QueryLimitExceededError,
    SessionArchivedError,
    SessionClosedError,
    SessionConflictError,
    SessionExpiredError,
    SessionNotFoundError,
)
from fiml.sessions.backends.base import (
    LIST_SIZES,
    HistoryCounters,
    SessionChanges,
    WriteLimits,
    list_size_error,
)
from fiml.sessions.backends.redis_codec import MICROSECOND, from_micros, to_micros
from fiml.sessions.backends.rules import new_expiry, state_keys_error
from fiml.sessions.events import query_event, state_events
from fiml.sessions.models import MAX_STATE_KEYS, STATE_SECTIONS, to_json
from fiml.sessions.search import query_asset

__all__ = ["apply_args", "counters_or_refusal", "earliest_expiry", "unindexed", "written_assets"]

_NOT_WRITABLE = {
    "archived": SessionArchivedError,
    "closed": SessionClosedError,
    "expired": SessionExpiredError,
}


def apply_args(changes: SessionChanges, now: datetime, limits: WriteLimits) -> list[str | bytes]:
    """ARGV of the APPLY script for one write (see the module docstring).

    Few arguments keep the client's per-argument encoding cost low: the scalars and the
    per-query fields travel in one JSON header.
    """
    header: dict[str, Any] = {
        "now": str(to_micros(now)),
        "max_queries": limits.max_queries,
        "max_state_keys": MAX_STATE_KEYS,
        "max_ttl": str(limits.max_ttl // MICROSECOND),
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
        header["extend_by"] = str(changes.extend_by // MICROSECOND)
    if changes.close:
        header["close"] = 1
    if changes.end_now:
        header["end_now"] = 1
    if limits.sliding_ttl:
        header["sliding"] = 1
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
            args += [key, to_json(value)]
        args += deletes
    if any(counts):
        header["sections"] = counts
        timeline = state_events(changes.set_keys, changes.deleted_keys, now=now)
        if timeline:
            header["state_events"] = len(timeline)
            args += [event.to_json() for event in timeline]
    args += [query_event(q, changes.quotes, now=now).to_json() for q in queries]
    brought = written_assets(changes)
    if brought:
        header["index"] = brought
    args[0] = pydantic_core.to_json(header)  # plain data, several times faster than json
    return args


def written_assets(changes: SessionChanges) -> list[str]:
    """The assets a write brings to its session: those it adds, its queries' symbols."""
    added = [] if changes.assets is None else changes.assets.added
    symbols = (query_asset(q) for q in changes.new_queries)
    return list(dict.fromkeys([*added, *(s for s in symbols if s is not None)]))


def unindexed(reply: list[Any]) -> tuple[str, int, list[str]]:
    """Of an 'ok' reply: the session's user ('' for none), its creation time in
    microseconds, and the assets it brought that the user's asset indexes lack."""
    user, created, *assets = reply[6:]
    return str(user), int(created), [str(asset) for asset in assets]


def earliest_expiry(changes: SessionChanges, now: datetime) -> datetime | None:
    """The earliest expiry a write may set, if it may bring expiry forward at all."""
    candidates = [changes.expires_at] if changes.expires_at is not None else []
    if changes.close or changes.end_now:
        candidates.append(now)
    return min(candidates, default=None)


def counters_or_refusal(
    reply: list[Any],
    session_id: UUID,
    changes: SessionChanges,
    *,
    now: datetime,
    limits: WriteLimits,
) -> HistoryCounters:
    """The counters of a write the script made, or the rules' error for its refusal."""
    code, *detail = reply
    if code == "ok":
        total, hits, version, _expires_at, added = detail[:5]
        return HistoryCounters(
            total_queries=total, cache_hits=hits, version=version, added_queries=added
        )
    if code == "not_found":
        raise SessionNotFoundError(session_id)
    if code in _NOT_WRITABLE:
        raise _NOT_WRITABLE[code](session_id)
    if code == "conflict":
        expected = cast(int, changes.expected_version)
        raise SessionConflictError(
            session_id, expected_version=expected, actual_version=int(detail[0])
        )
    if code == "limit":
        raise QueryLimitExceededError(session_id, limit=limits.max_queries)
    if code == "list_size":
        raise list_size_error(str(detail[0]), int(detail[1]))
    if code == "state_keys":
        raise state_keys_error(STATE_SECTIONS[int(detail[0]) - 1], int(detail[1]))
    if code == "ttl":  # the rules word the error (the room left): they raise it here
        new_expiry(from_micros(detail[0]), changes, now, limits.max_ttl)
        raise RuntimeError("the apply script refused an expiry that the rules accept")
    raise RuntimeError(f"unexpected reply from the apply script: {code!r}")
