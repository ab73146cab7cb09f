"""Analysis sessions: models, the store, analytics and background jobs."""

from fiml.sessions.models import (
    AnalysisHistory,
    QueryRecord,
    Session,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionType,
)
from fiml.sessions.store import (
    ALL_QUERIES,
    HistoryPage,
    SessionPage,
    SessionStore,
    get_session_store,
)

__all__ = [
    "ALL_QUERIES",
    "AnalysisHistory",
    "HistoryPage",
    "QueryRecord",
    "Session",
    "SessionPage",
    "SessionState",
    "SessionStatus",
    "SessionStore",
    "SessionSummary",
    "SessionType",
    "get_session_store",
]
