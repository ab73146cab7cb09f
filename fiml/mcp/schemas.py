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
from fiml.sessions.models import (
    QueryRecord,
    Session,
    SessionStatus,
    SessionSummary,
    SessionType,
)
from fiml.sessions.store import HistoryPage

__all__ = [
    "AnalyticsResult",
    "AssetCount",
    "ContextUpdateResult",
    "HistoryResult",
    "QueryView",
    "QuoteView",
    "ResultModel",
    "SearchResult",
    "SessionContext",
    "SessionDetails",
    "SessionInfo",
    "SessionList",
    "SessionListItem",
    "SessionStats",
    "TagCount",
    "pydantic_json_schema",
]


class QueryView(ResultModel):
    """One tracked query."""

    id: UUID
    timestamp: datetime
    query_type: str
    parameters: dict[str, Any]
    result_summary: str | None
    execution_time_ms: float | None
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
    closed_at: datetime | None
    archived_at: datetime | None
    time_remaining_seconds: float = Field(description="Zero once the session has expired.")

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
    cache_hit_rate: float
    query_types: dict[str, int]
    first_query_at: datetime | None
    last_query_at: datetime | None

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
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at end.")


class HistoryResult(ResultModel):
    """A page of a session's queries, oldest first."""

    session_id: UUID
    queries: list[QueryView]
    offset: int
    total_queries: int
    next_offset: int | None = Field(description="Pass as offset for the next page; null at end.")

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


class ContextUpdateResult(ResultModel):
    """A session's context and preferences after an update."""

    session_id: UUID
    context: dict[str, Any]
    preferences: dict[str, Any]


class QuoteView(Quote):
    """A quote, with a one-line summary; ``synthetic`` is true for offline quotes."""

    summary_text: str = Field(description="The quote in one line, e.g. 'AAPL: $175.43 (+2.30%)'.")

    @classmethod
    def from_quote(cls, quote: Quote) -> QuoteView:
        """The view of a provider's quote."""
        return cls(**quote.model_dump(), summary_text=quote.summary())


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


class SearchResult(ResultModel):
    """A quote, where it came from, and, when tracked, the session's context."""

    quote: QuoteView
    cache_hit: bool
    execution_time_ms: float
    tracked: bool = Field(description="True when the query was recorded in a session.")
    repeated: bool = Field(
        default=False,
        description="True when the session had already recorded this request_id: the query "
        "counts once, as first recorded.",
    )
    session: SessionContext | None = None


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
    user_id: str | None = Field(description="Whose sessions; null when scope is 'all'.")
    session_type: SessionType | None
    days: float
    total_sessions: int
    active_sessions: int
    archived_sessions: int = Field(description="Finished sessions: closed or expired, archived.")
    total_queries: int
    avg_duration_seconds: float
    avg_queries_per_session: float
    abandonment_rate: float = Field(
        description="Share of finished sessions left to expire after fewer than 2 queries."
    )
    cache_hit_rate: float
    top_assets: list[AssetCount]
    query_type_distribution: dict[str, int]
    session_type_breakdown: dict[str, int]
    popular_tags: list[TagCount]
    message: str | None = Field(default=None, description="Set when there is no data.")
