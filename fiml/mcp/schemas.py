"""The MCP tools' typed arguments and results.

Arguments are ``Annotated`` types whose JSON schema tells clients what is allowed (a UUID,
one of the session types, 1-50 assets) while the values are validated by the store, so a
bad value gets FIML's own error message naming the field. Results are pydantic models, so
clients receive an ``outputSchema`` and ``structuredContent``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from fiml.market.base import Quote
from fiml.sessions.models import (
    MAX_ASSETS,
    MAX_TAGS,
    QueryRecord,
    Session,
    SessionStatus,
    SessionSummary,
    SessionType,
)
from fiml.sessions.store import MAX_PAGE, HistoryPage

__all__ = [
    "AnalyticsResult",
    "AssetCount",
    "AssetsArg",
    "ContextUpdateResult",
    "CursorArg",
    "DaysArg",
    "HistoryResult",
    "HoursArg",
    "OffsetArg",
    "OptionalSessionIdArg",
    "OptionalSessionTypeArg",
    "PageLimitArg",
    "QueryView",
    "QuoteView",
    "RemoveKeysArg",
    "SearchResult",
    "SessionContext",
    "SessionDetails",
    "SessionIdArg",
    "SessionInfo",
    "SessionList",
    "SessionListItem",
    "SessionStats",
    "SessionTypeArg",
    "StateArg",
    "TagCount",
    "TagsArg",
    "TtlArg",
]

_SESSION_TYPES = [t.value for t in SessionType]

SessionIdArg = Annotated[
    str,
    Field(
        description="The session's id, as create-analysis-session returned it.",
        json_schema_extra={"format": "uuid"},
    ),
]
OptionalSessionIdArg = Annotated[
    str | None,
    Field(
        description="Track this query in the session with this id (optional); the result then "
        "carries the session's context.",
        json_schema_extra={"format": "uuid"},
    ),
]
SessionTypeArg = Annotated[
    str,
    Field(description="What kind of analysis this is.", json_schema_extra={"enum": _SESSION_TYPES}),
]
OptionalSessionTypeArg = Annotated[
    str | None,
    Field(description=f"Only sessions of this type: one of {', '.join(_SESSION_TYPES)}."),
]
AssetsArg = Annotated[
    list[str],
    Field(
        description=f"The symbols under study (1-{MAX_ASSETS}), e.g. ['AAPL', 'MSFT'].",
        json_schema_extra={"minItems": 1, "maxItems": MAX_ASSETS},
    ),
]
TagsArg = Annotated[
    list[str] | None,
    Field(description=f"Labels for finding the session later (at most {MAX_TAGS})."),
]
TtlArg = Annotated[
    float | None,
    Field(
        description="Hours until the session expires (fractions allowed); defaults to the "
        "server's session_default_ttl_hours and may not exceed session_max_ttl_hours."
    ),
]
HoursArg = Annotated[
    float,
    Field(
        description="How many hours to push the expiry back; the new expiry may not be "
        "further than session_max_ttl_hours from now.",
        json_schema_extra={"exclusiveMinimum": 0},
    ),
]
CursorArg = Annotated[
    str | None,
    Field(description="next_cursor from the previous page; omit for the first page."),
]
PageLimitArg = Annotated[
    int,
    Field(
        description=f"Page size (1-{MAX_PAGE}).",
        json_schema_extra={"minimum": 1, "maximum": MAX_PAGE},
    ),
]
OffsetArg = Annotated[
    int,
    Field(description="How many of the oldest queries to skip.", json_schema_extra={"minimum": 0}),
]
StateArg = Annotated[
    dict[str, Any] | None,
    Field(description="Keys to set, each to any JSON value (at most 64 KiB each)."),
]
RemoveKeysArg = Annotated[
    list[str] | None,
    Field(description="Context keys to remove."),
]
DaysArg = Annotated[
    float,
    Field(
        description="Only sessions created in the last this many days.",
        json_schema_extra={"exclusiveMinimum": 0},
    ),
]


class QueryView(BaseModel):
    """One tracked query."""

    id: UUID
    timestamp: datetime
    query_type: str
    parameters: dict[str, Any]
    result_summary: str | None
    execution_time_ms: float | None
    cache_hit: bool

    @classmethod
    def from_record(cls, record: QueryRecord) -> QueryView:
        """The view of a stored query."""
        return cls.model_validate(record.model_dump())


class SessionDetails(BaseModel):
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


class SessionStats(BaseModel):
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


class SessionInfo(BaseModel):
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
            recent_queries=[QueryView.from_record(q) for q in state.history.queries],
            context=dict(state.context),
            preferences=dict(state.preferences),
            intermediate_results=dict(state.intermediate_results),
        )


class SessionListItem(BaseModel):
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


class SessionList(BaseModel):
    """A page of the caller's sessions, newest first."""

    sessions: list[SessionListItem]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at end.")


class HistoryResult(BaseModel):
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
            queries=[QueryView.from_record(q) for q in page.queries],
            offset=page.offset,
            total_queries=page.total_queries,
            next_offset=page.next_offset,
        )


class ContextUpdateResult(BaseModel):
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


class SessionContext(BaseModel):
    """What a session knows so far: its assets, its latest queries and its context."""

    session_id: UUID
    session_type: SessionType
    assets: list[str]
    total_queries: int
    recent_queries: list[QueryView] = Field(
        description="The latest queries, oldest first, ending with this one."
    )
    context: dict[str, Any]


class SearchResult(BaseModel):
    """A quote, where it came from, and, when tracked, the session's context."""

    quote: QuoteView
    cache_hit: bool
    execution_time_ms: float
    tracked: bool = Field(description="True when the query was recorded in a session.")
    session: SessionContext | None = None


class AssetCount(BaseModel):
    """How many sessions studied an asset."""

    asset: str
    count: int


class TagCount(BaseModel):
    """How many sessions carry a tag."""

    tag: str
    count: int


class AnalyticsResult(BaseModel):
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
    abandonment_rate: float = Field(description="Share of finished sessions left to expire.")
    cache_hit_rate: float
    top_assets: list[AssetCount]
    query_type_distribution: dict[str, int]
    session_type_breakdown: dict[str, int]
    popular_tags: list[TagCount]
    message: str | None = Field(default=None, description="Set when there is no data.")
