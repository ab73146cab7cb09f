"""Tracking a search in an analysis session, and handing the session's context back."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4, uuid5

from fiml.core.errors import InvalidInputError, RequestIdReusedError
from fiml.core.metrics import recorder
from fiml.market.base import Quote
from fiml.market.service import QuoteResult
from fiml.mcp.auth import Identity
from fiml.mcp.ownership import ensure_writable, owned_session
from fiml.mcp.schemas import QueryView, SessionContext
from fiml.sessions.events import recorded_quote
from fiml.sessions.models import MAX_SUMMARY_CHARS, QueryRecord, Session
from fiml.sessions.store import SessionStore

__all__ = [
    "DEFAULT_CONTEXT_QUERIES",
    "MAX_REQUEST_ID_CHARS",
    "TrackedQuery",
    "check_request_id",
    "track_query_in_session",
]

DEFAULT_CONTEXT_QUERIES = 10
"""How many recent queries a tracked search returns with the session's context."""

MAX_REQUEST_ID_CHARS = 128
_REQUEST_IDS = UUID("8294bb5a-06e4-4fa3-ae0d-b79c224702ef")
"""Namespace of the query ids derived from (session, request_id): never change it, or
retries that straddle the change would be recorded twice."""


def check_request_id(request_id: Any) -> str:
    """A caller's request id: 1-128 printable characters, else InvalidInputError."""
    if (
        not isinstance(request_id, str)
        or not 1 <= len(request_id) <= MAX_REQUEST_ID_CHARS
        or not request_id.isprintable()
    ):
        raise InvalidInputError(
            "request_id",
            request_id,
            f"must be 1-{MAX_REQUEST_ID_CHARS} printable characters",
        )
    return request_id


@dataclass(frozen=True, slots=True)
class TrackedQuery:
    """A search that was recorded in a session: its result, its record, the session's context."""

    result: QuoteResult
    query: QueryRecord
    context: SessionContext
    repeated: bool = False
    """The session had already recorded this request id; nothing new was recorded."""


async def track_query_in_session(
    store: SessionStore,
    session_id: str | UUID,
    *,
    identity: Identity,
    query_type: str,
    parameters: dict[str, Any],
    search: Callable[[], Awaitable[QuoteResult]],
    recent_queries: int = DEFAULT_CONTEXT_QUERIES,
    request_id: str | None = None,
) -> TrackedQuery:
    """Run ``search`` and record it in the caller's session.

    The session is checked first (it must be the caller's and writable), so a search is
    never run for a session that cannot record it. The query (type, parameters, result
    summary, execution time, cache hit) is appended atomically; a failed search records
    nothing. The context returned holds the session's assets, its ``recent_queries``
    latest queries ending with this one, and its context keys; ``total_queries`` counts
    every query, including any other writer's.

    With a ``request_id`` the query's id is derived from the session and the request id,
    so the same request sent again (a retry) is recorded once: the search still runs and
    its quote is returned, but the session keeps the first record (``repeated``). A request
    id is bound to its call: sent again with another query type or other parameters it is
    a RequestIdReusedError, and nothing is recorded.
    """
    if request_id is not None:
        request_id = check_request_id(request_id)
    keep = max(recent_queries, 1)
    session = await owned_session(store, identity, session_id, history_limit=keep - 1)
    ensure_writable(session)
    query_id = uuid4() if request_id is None else uuid5(_REQUEST_IDS, f"{session.id}/{request_id}")
    started = time.perf_counter()
    result = await search()
    elapsed_ms = (time.perf_counter() - started) * 1000
    record = QueryRecord(
        id=query_id,
        query_type=query_type,
        parameters=parameters,
        result_summary=_summary(result.quote),
        execution_time_ms=elapsed_ms,
        cache_hit=result.cache_hit,
    )
    quote = result.quote
    answered = recorded_quote(
        provider=quote.source,
        quote_timestamp=quote.as_of,
        fetched_at=store.now(),
        cached=result.cache_hit,
        figures=quote.model_dump(mode="json", exclude={"as_of", "source"}),
    )
    counters = await store.append_query(session.id, record, quote=answered)
    repeated = counters.added_queries == 0
    if repeated and request_id is not None:
        await _ensure_same_call(store, session, record, request_id)
    if not repeated:
        recorder().query_tracked(session.type.value, query_type, record.cache_hit)
    loaded = session.state.history.queries
    recent = (loaded if repeated else [*loaded, record])[-keep:]
    context = SessionContext(
        session_id=session.id,
        session_type=session.type,
        assets=list(session.assets),
        total_queries=counters.total_queries,
        recent_queries=QueryView.from_records(recent),
        context=dict(session.state.context),
    )
    return TrackedQuery(result=result, query=record, context=context, repeated=repeated)


async def _ensure_same_call(
    store: SessionStore, session: Session, record: QueryRecord, request_id: str
) -> None:
    """Raise RequestIdReusedError unless the query the session already holds under
    ``record``'s id was the same call (query type and parameters).

    Only a repeat gets here, which is rare, so the check costs nothing on a first call.
    A retry usually follows its first attempt at once, so the first record is usually
    among the recent queries already loaded; else it is read back (the store finds it in
    the archive too, should the session have been archived meanwhile).
    """
    loaded = session.state.history.queries
    first = next((q for q in loaded if q.id == record.id), None)
    if first is None:
        first = await store.get_query(session.id, record.id)
    if first is not None and _call_of(first) != _call_of(record):
        raise RequestIdReusedError(request_id)


def _call_of(query: QueryRecord) -> str:
    """What identifies a query's call: its type and parameters, as their stored JSON
    (sorted keys), so a stored record and a fresh one compare equal when they should."""
    return json.dumps([query.query_type, query.parameters], sort_keys=True)


def _summary(quote: Quote) -> str:
    """The quote's one-line summary, cut to the length a query record keeps.

    The provider's answer decides its length (a long name or currency), and an overlong
    summary must not cost the agent its quote or the session its query.
    """
    text = quote.summary()
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[: MAX_SUMMARY_CHARS - 1] + "…"
    return text
