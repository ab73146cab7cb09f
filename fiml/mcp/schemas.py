"""The MCP tools' results (their arguments are in :mod:`fiml.mcp.arguments`).

Results are pydantic models, so clients receive an ``outputSchema`` and
``structuredContent``.

The results publish a flat JSON schema (:class:`~fiml.mcp.flat_schema.ResultModel`):
the same values pass as with pydantic's own, and the client's check of each result
costs about a third less (:mod:`fiml.mcp.flat_schema` has the figures).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter

from fiml.market.base import Quote
from fiml.mcp.flat_schema import ResultModel, pydantic_json_schema
from fiml.mcp.replies import (
    Milliseconds,
    Ratio,
    Rounded2,
    Seconds,
    crypto_decimals,
    equity_decimals,
    quoted_price,
)
from fiml.sessions.models import (
    QueryRecord,
    Session,
    SessionStatus,
    SessionSummary,
    SessionType,
)
from fiml.sessions.paging import SessionPage
from fiml.sessions.store import HistoryPage
from fiml.sessions.timeline import TimelinePage

__all__ = [
    "AnalyticsResult",
    "AssetCount",
    "ContextUpdateResult",
    "ForkResult",
    "HistoryResult",
    "QueryView",
    "QuoteView",
    "RecentQuery",
    "ResultModel",
    "SearchResult",
    "SessionContext",
    "SessionDetails",
    "SessionInfo",
    "SessionList",
    "SessionListItem",
    "SessionReply",
    "SessionStats",
    "TagCount",
    "TimelineEvent",
    "TimelineResult",
    "pydantic_json_schema",
]


class QueryView(ResultModel):
    """One tracked query."""

    id: UUID
    timestamp: datetime
    query_type: str
    parameters: dict[str, Any]
    result_summary: str | None = None
    execution_time_ms: Milliseconds | None = None
    cache_hit: bool

    @classmethod
    def from_records(cls, records: Iterable[QueryRecord]) -> list[QueryView]:
        """The views of stored queries, in one validation (half the cost of one by one)."""
        return _QUERY_VIEWS.validate_python(list(records), from_attributes=True)


_QUERY_VIEWS = TypeAdapter(list[QueryView])


class SessionDetails(ResultModel):
    """A session's identity, lifecycle and subject."""

    session_id: UUID
    session_type: SessionType
    status: SessionStatus
    assets: list[str]
    tags: list[str]
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    closed_at: datetime | None = None
    archived_at: datetime | None = None
    time_remaining_seconds: Seconds = Field(description="Zero once the session has expired.")

    @classmethod
    def from_session(cls, session: Session) -> SessionDetails:
        """The details of a session."""
        return cls(
            session_id=session.id,
            session_type=session.type,
            status=session.status,
            assets=list(session.assets),
            tags=list(session.tags),
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_accessed_at=session.last_accessed_at,
            closed_at=session.closed_at,
            archived_at=session.archived_at,
            time_remaining_seconds=session.time_remaining.total_seconds(),
        )


class SessionStats(ResultModel):
    """Counters over a session's whole query history."""

    total_queries: int
    cache_hits: int
    cache_hit_rate: Ratio
    query_types: dict[str, int]
    first_query_at: datetime | None = None
    last_query_at: datetime | None = None

    @classmethod
    def from_session(cls, session: Session) -> SessionStats:
        """The stats of a session."""
        history = session.state.history
        return cls(
            total_queries=history.total_queries,
            cache_hits=history.cache_hits,
            cache_hit_rate=history.cache_hit_rate,
            query_types=history.get_query_types_summary(),
            first_query_at=history.first_query_at,
            last_query_at=history.last_query_at,
        )


class SessionInfo(ResultModel):
    """Everything about a session: details, stats, recent queries and accumulated state."""

    session: SessionDetails
    stats: SessionStats
    recent_queries: list[QueryView] = Field(description="The latest queries, oldest first.")
    context: dict[str, Any]
    preferences: dict[str, Any]
    intermediate_results: dict[str, Any]

    @classmethod
    def from_session(cls, session: Session) -> SessionInfo:
        """Everything about a session (with the queries it was loaded with)."""
        state = session.state
        return cls(
            session=SessionDetails.from_session(session),
            stats=SessionStats.from_session(session),
            recent_queries=QueryView.from_records(state.history.queries),
            context=dict(state.context),
            preferences=dict(state.preferences),
            intermediate_results=dict(state.intermediate_results),
        )


class SessionListItem(ResultModel):
    """A session in a listing."""

    session_id: UUID
    session_type: SessionType
    status: SessionStatus
    assets: list[str]
    tags: list[str]
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    total_queries: int

    @classmethod
    def from_summary(cls, summary: SessionSummary) -> SessionListItem:
        """The listing entry of a session summary."""
        return cls(
            session_id=summary.id,
            session_type=summary.type,
            status=summary.status,
            assets=list(summary.assets),
            tags=list(summary.tags),
            created_at=summary.created_at,
            expires_at=summary.expires_at,
            last_accessed_at=summary.last_accessed_at,
            total_queries=summary.total_queries,
        )


class SessionList(ResultModel):
    """A page of the caller's sessions, newest first."""

    sessions: list[SessionListItem]
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; absent at the end."
    )

    @classmethod
    def from_page(cls, page: SessionPage) -> SessionList:
        """The reply for one page of the store's listing or search."""
        return cls(
            sessions=[SessionListItem.from_summary(s) for s in page.sessions],
            next_cursor=page.next_cursor,
        )


class HistoryResult(ResultModel):
    """A page of a session's queries, oldest first."""

    session_id: UUID
    queries: list[QueryView]
    offset: int
    total_queries: int
    next_offset: int | None = Field(
        default=None, description="Pass as offset for the next page; absent at the end."
    )

    @classmethod
    def from_page(cls, page: HistoryPage) -> HistoryResult:
        """The result for a store history page."""
        return cls(
            session_id=page.session_id,
            queries=QueryView.from_records(page.queries),
            offset=page.offset,
            total_queries=page.total_queries,
            next_offset=page.next_offset,
        )


class TimelineEvent(ResultModel):
    """One event of a session's timeline: a tracked query with the quote it answered
    (``data.quote``), or a context or preferences change (``data.set``, ``data.removed``)."""

    seq: int
    kind: Literal["query", "context", "preferences"]
    at: datetime
    data: dict[str, Any]


class TimelineResult(ResultModel):
    """A page of a session's timeline, in order: what the session saw, as it was recorded."""

    session_id: UUID
    events: list[TimelineEvent]
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; absent at the end."
    )

    @classmethod
    def from_page(cls, session_id: UUID, page: TimelinePage) -> TimelineResult:
        """The result for a store timeline page."""
        events = [TimelineEvent(seq=e.seq, kind=e.kind, at=e.at, data=e.data) for e in page.events]
        return cls(session_id=session_id, events=events, next_cursor=page.next_cursor)


class ForkResult(SessionDetails):
    """The new session a fork made, the session it came from, and what it holds."""

    forked_from: UUID
    total_queries: int

    @classmethod
    def of(cls, fork: Session, origin: UUID) -> ForkResult:
        """The result for ``fork``, made from ``origin``."""
        details = SessionDetails.from_session(fork).model_dump()
        return cls(**details, forked_from=origin, total_queries=fork.state.history.total_queries)


class ContextUpdateResult(ResultModel):
    """A session's context and preferences after an update."""

    session_id: UUID
    context: dict[str, Any]
    preferences: dict[str, Any]


class QuoteView(Quote):
    """A provider's quote; synthetic is true for offline quotes.

    Prices and changes are rounded to the instrument's tick (a stock's cents, a coin's 8
    significant digits), the change in percent to two decimals and the time to the
    second, which is all providers report.
    """

    @classmethod
    def from_quote(cls, quote: Quote) -> QuoteView:
        """The view of a provider's quote."""
        if quote.asset_class == "crypto":
            decimals = crypto_decimals(quote.price)
        else:
            decimals = equity_decimals(quote.price)
        values = quote.model_dump()
        values.update(
            price=round(quote.price, decimals),
            change=quoted_price(quote.change, decimals),
            change_percent=quoted_price(quote.change_percent, 2),
            volume=quoted_price(quote.volume, 8),
            as_of=quote.as_of.replace(microsecond=0),
        )
        return cls(**values)


class SessionContext(ResultModel):
    """What a session knows so far: its assets, its latest queries and its context."""

    session_id: UUID
    session_type: SessionType
    assets: list[str]
    total_queries: int
    recent_queries: list[QueryView] = Field(
        description="The latest queries, oldest first, ending with this one (unless it "
        "repeated an earlier request_id)."
    )
    context: dict[str, Any]


class RecentQuery(ResultModel):
    """A query as a tracked search recalls it: what was asked and what came back."""

    timestamp: datetime
    query_type: str
    parameters: dict[str, Any]
    result_summary: str | None = None
    cache_hit: bool

    @classmethod
    def from_views(cls, views: Iterable[QueryView]) -> list[RecentQuery]:
        """The recollections of full query views (their ids and timings left out)."""
        return _RECENT_QUERIES.validate_python(list(views), from_attributes=True)


_RECENT_QUERIES = TypeAdapter(list[RecentQuery])


class SessionReply(ResultModel):
    """The session part of a tracked search's reply; how much depends on ``context``."""

    total_queries: int = Field(description="Queries recorded in the session, this one included.")
    assets: list[str] | None = Field(default=None, description="The session's assets (brief).")
    context_keys: list[str] | None = Field(
        default=None,
        description="Names of the session's context keys, when it has some (brief; the "
        "first ones, when many); their values come with context='recent' or from "
        "get-session-info.",
    )
    recent_queries: list[RecentQuery] | None = Field(
        default=None, description="The latest queries, oldest first, ending with this one (recent)."
    )
    context: dict[str, Any] | None = Field(
        default=None, description="The session's context keys and values (recent)."
    )


class SearchResult(ResultModel):
    """A quote, where it came from, and, when tracked, the session's side of it."""

    quote: QuoteView
    cache_hit: bool
    tracked: bool = Field(description="True when the query was recorded in a session.")
    repeated: bool | None = Field(
        default=None,
        description="True when the session had already recorded this request_id: the query "
        "counts once, as first recorded. Absent otherwise.",
    )
    session: SessionReply | None = Field(
        default=None, description="With a session_id: the session, as much as context asks."
    )


class AssetCount(ResultModel):
    """How many sessions studied an asset."""

    asset: str
    count: int


class TagCount(ResultModel):
    """How many sessions carry a tag."""

    tag: str
    count: int


class AnalyticsResult(ResultModel):
    """Usage figures over a window of days, for the caller or (admin) other users.

    Averages, rates, rankings and distributions describe the finished sessions of the
    window (archived after being closed or expiring); ``active_sessions`` counts those
    still running and ``total_sessions`` both together.
    """

    scope: Literal["user", "all"] = Field(description="One user's sessions, or every user's.")
    user_id: str | None = Field(default=None, description="Whose sessions; absent for 'all'.")
    session_type: SessionType | None = None
    days: float
    total_sessions: int
    active_sessions: int
    archived_sessions: int = Field(description="Finished sessions: closed or expired, archived.")
    total_queries: int
    avg_duration_seconds: Seconds
    avg_queries_per_session: Rounded2
    abandonment_rate: Ratio = Field(
        description="Share of finished sessions left to expire after fewer than 2 queries."
    )
    cache_hit_rate: Ratio
    top_assets: list[AssetCount]
    query_type_distribution: dict[str, int]
    session_type_breakdown: dict[str, int]
    popular_tags: list[TagCount]
    message: str | None = Field(default=None, description="Set when there is no data.")
