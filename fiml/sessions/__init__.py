"""Analysis sessions: models, the store, analytics and background jobs.

The names below are imported from their modules when first looked up
(:mod:`fiml.core.lazy`), not with the package: importing any ``fiml.sessions`` module runs
this file first, and the store would bring SQLAlchemy and the backends into commands that
never open it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fiml.core.lazy import lazy_exports

if TYPE_CHECKING:
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

_HOMES = {
    "AnalysisHistory": "fiml.sessions.models",
    "QueryRecord": "fiml.sessions.models",
    "Session": "fiml.sessions.models",
    "SessionState": "fiml.sessions.models",
    "SessionStatus": "fiml.sessions.models",
    "SessionSummary": "fiml.sessions.models",
    "SessionType": "fiml.sessions.models",
    "ALL_QUERIES": "fiml.sessions.store",
    "HistoryPage": "fiml.sessions.store",
    "SessionPage": "fiml.sessions.store",
    "SessionStore": "fiml.sessions.store",
    "get_session_store": "fiml.sessions.store",
}

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


if not TYPE_CHECKING:  # type checkers see the imports above, and so refuse unknown names
    __getattr__, __dir__ = lazy_exports(__name__, _HOMES)
