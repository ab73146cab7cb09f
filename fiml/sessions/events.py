"""A session's timeline: the point-in-time record of what happened to it, in order.

Every write that tracks a query or changes context or preferences appends events in the
same atomic write as the change itself (one SQL transaction, or the Redis APPLY script), so
a change and its event are one: neither exists without the other. Within one write the
state events come first and the query events after them, so "as the session stood after
query N" includes the context stored together with that query.

A query's event keeps what reproduces its answer without asking any provider again: the
provider, the quote's own timestamp, the time it was fetched, whether it came from the
cache, and the quote's figures (:class:`RecordedQuote`, at most
:data:`MAX_RECORDED_QUOTE_BYTES` of JSON). Replaying a session is reading these events.

Events are numbered 1..N per session (``seq``), which is what a timeline page continues
after. Archival carries them with the session, so a timeline reads the same afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter

from fiml.sessions.history import FROM_STORE, QueryRecord

__all__ = [
    "EVENT_KINDS",
    "MAX_PROVIDER_CHARS",
    "MAX_RECORDED_QUOTE_BYTES",
    "EventKind",
    "NewEvent",
    "RecordedQuote",
    "SessionEvent",
    "events_from_json",
    "query_event",
    "recorded_quote",
    "state_events",
]

MAX_RECORDED_QUOTE_BYTES = 2048
"""The most JSON a recorded quote may take. Over it, the quote's free-text fields (``name``,
``market``) are dropped and ``truncated`` is set; if it is still over (a provider sent an
absurdly long symbol, currency or source), every figure is dropped and the provider's name
cut to :data:`MAX_PROVIDER_CHARS` characters, so the record still says who answered and
when. A figure is never altered: it is the provider's value exactly, or absent."""
MAX_PROVIDER_CHARS = 128

EventKind = Literal["query", "context", "preferences"]
EVENT_KINDS: tuple[EventKind, ...] = ("query", "context", "preferences")
_STATE_KINDS: tuple[EventKind, ...] = ("context", "preferences")
_FREE_TEXT = ("name", "market")


class RecordedQuote(BaseModel):
    """What a tracked query's answer was, as fetched: enough to replay it, never refetched."""

    model_config = ConfigDict(frozen=True)

    provider: str
    quote_timestamp: datetime
    """The quote's own time (the provider's ``as_of``)."""
    fetched_at: datetime
    """When FIML fetched it (or served it from its cache)."""
    cached: bool
    figures: dict[str, Any]
    """The quote's fields (symbol, price, currency, change, volume...) as the provider sent them."""
    truncated: bool = False
    """Free-text fields were dropped to fit :data:`MAX_RECORDED_QUOTE_BYTES`."""


def recorded_quote(
    *,
    provider: str,
    quote_timestamp: datetime,
    fetched_at: datetime,
    cached: bool,
    figures: dict[str, Any],
) -> RecordedQuote:
    """The record of a quote, within the size cap by the rule of
    :data:`MAX_RECORDED_QUOTE_BYTES`."""
    record = RecordedQuote(
        provider=provider,
        quote_timestamp=quote_timestamp,
        fetched_at=fetched_at,
        cached=cached,
        figures=figures,
    )
    if len(record.model_dump_json()) <= MAX_RECORDED_QUOTE_BYTES:
        return record
    trimmed = {k: v for k, v in figures.items() if k not in _FREE_TEXT}
    record = record.model_copy(update={"figures": trimmed, "truncated": True})
    if len(record.model_dump_json()) <= MAX_RECORDED_QUOTE_BYTES:
        return record
    return record.model_copy(update={"figures": {}, "provider": provider[:MAX_PROVIDER_CHARS]})


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event a write is about to append (its ``seq`` is its place, given when stored).

    A plain dataclass whose ``data`` may hold models, UUIDs and datetimes as they are: one
    ``pydantic_core.to_json`` encodes it (the Redis list's element, or the SQL JSON column,
    whose serializer is the same), several times cheaper than building and dumping a
    model on every tracked query.
    """

    kind: EventKind
    at: datetime
    data: dict[str, Any]

    def to_json(self) -> str:
        """The stored JSON document (the Redis list's element)."""
        return pydantic_core.to_json({"kind": self.kind, "at": self.at, "data": self.data}).decode()


class _StoredEvent(BaseModel):
    kind: EventKind
    at: datetime
    data: dict[str, Any]

    def to_json(self) -> str:
        """The stored JSON document, as :meth:`NewEvent.to_json` writes it."""
        return pydantic_core.to_json({"kind": self.kind, "at": self.at, "data": self.data}).decode()


class SessionEvent(_StoredEvent):
    """One stored event: its 1-based place in the session's timeline, kind, time and data."""

    seq: int


def state_events(
    set_keys: dict[str, dict[str, Any]], deleted_keys: dict[str, list[str]], *, now: datetime
) -> list[NewEvent]:
    """One event per context or preferences section the write changes (set and removed
    keys with the values set), in that order; other sections are not on the timeline."""
    events = []
    for kind in _STATE_KINDS:
        sets = set_keys.get(kind) or {}
        removed = deleted_keys.get(kind) or []
        if sets or removed:
            data: dict[str, Any] = {"set": dict(sets), "removed": list(removed)}
            events.append(NewEvent(kind=kind, at=now, data=data))
    return events


def query_event(
    query: QueryRecord, quotes: Mapping[UUID, RecordedQuote], *, now: datetime
) -> NewEvent:
    """The event of a newly tracked query, with its recorded quote if ``quotes`` has one."""
    quote = quotes.get(query.id)
    data: dict[str, Any] = {
        "query_id": query.id,
        "query_type": query.query_type,
        "timestamp": query.timestamp,
        "cache_hit": query.cache_hit,
        "quote": quote,
    }
    return NewEvent(kind="query", at=now, data=data)


_EVENT_LIST = TypeAdapter(list[_StoredEvent])


def events_from_json(items: Sequence[str], *, first_seq: int) -> list[SessionEvent]:
    """Stored event documents, numbered from ``first_seq``."""
    if not items:
        return []
    parsed = _EVENT_LIST.validate_json(f"[{','.join(items)}]", context=FROM_STORE)
    return [
        SessionEvent(seq=first_seq + i, kind=e.kind, at=e.at, data=e.data)
        for i, e in enumerate(parsed)
    ]
