"""The session data model: what an analysis session remembers.

A :class:`Session` holds its :class:`SessionState` (context, preferences, intermediate
results, metadata) and an :class:`AnalysisHistory` of :class:`QueryRecord` objects
(:mod:`fiml.sessions.history`, whose names are importable here too). The history's
counters (``total_queries``, cache hits, per-type counts) always describe the whole
history, even when only the most recent queries were loaded with the session.

The store remembers what a session looked like when it was read (its *baseline*), so that
``update_session`` writes only what the caller changed and concurrent writers never
overwrite each other.

Backends rebuild what they stored through :func:`session_from_store`,
:func:`queries_from_json` and :func:`queries_from_rows`: plain pydantic validation under
the :data:`FROM_STORE` context, in which the field validators (asset and tag
normalization, user id and JSON checks, conversion of times to UTC) return stored values
as they are, since they were checked when written.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions.history import (
    FROM_STORE,
    AnalysisHistory,
    QueryRecord,
    as_utc,
    from_store,
    queries_from_json,
    queries_from_rows,
    utcnow,
)
from fiml.sessions.limits import (
    MAX_ASSETS,
    MAX_JSON_DEPTH,
    MAX_STATE_KEYS,
    MAX_STATE_VALUE_BYTES,
    MAX_SUMMARY_CHARS,
    MAX_TAGS,
    check_user_id,
    checked_state_value,
    normalize_assets,
    normalize_tags,
    to_json,
)

__all__ = [
    "FROM_STORE",
    "MAX_ASSETS",
    "MAX_JSON_DEPTH",
    "MAX_STATE_KEYS",
    "MAX_STATE_VALUE_BYTES",
    "MAX_SUMMARY_CHARS",
    "MAX_TAGS",
    "STATE_SECTIONS",
    "AnalysisHistory",
    "Baseline",
    "QueryRecord",
    "Session",
    "SessionState",
    "SessionStatus",
    "SessionSummary",
    "SessionType",
    "queries_from_json",
    "queries_from_rows",
    "session_from_store",
    "to_json",
    "utcnow",
]

STATE_SECTIONS = ("context", "preferences", "intermediate_results", "metadata")


class SessionType(StrEnum):
    """What kind of analysis a session is for."""

    EQUITY = "equity"
    CRYPTO = "crypto"
    PORTFOLIO = "portfolio"
    COMPARATIVE = "comparative"
    MACRO = "macro"


class SessionStatus(StrEnum):
    """Where a session is in its life: active, closed by its user, expired, or archived."""

    ACTIVE = "active"
    CLOSED = "closed"
    EXPIRED = "expired"
    ARCHIVED = "archived"


class SessionState(BaseModel):
    """What an agent builds up in a session: context, preferences, intermediate results."""

    context: dict[str, Any] = Field(default_factory=dict)
    preferences: dict[str, Any] = Field(default_factory=dict)
    intermediate_results: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    history: AnalysisHistory = Field(default_factory=AnalysisHistory)

    def _put(self, section: str, key: str, value: Any) -> None:
        target: dict[str, Any] = getattr(self, section)
        checked = checked_state_value(section, key, value)
        if key not in target and len(target) >= MAX_STATE_KEYS:
            raise ContextValueError(section, key, f"holds the maximum of {MAX_STATE_KEYS} keys")
        target[key] = checked

    def update_context(self, key: str, value: Any) -> None:
        """Set a context key; the value must be JSON (at most 64 KiB)."""
        self._put("context", key, value)

    def get_context(self, key: str, default: Any = None) -> Any:
        """A context value, or ``default``."""
        return self.context.get(key, default)

    def set_preference(self, key: str, value: Any) -> None:
        """Set a preference key; the value must be JSON (at most 64 KiB)."""
        self._put("preferences", key, value)

    def get_preference(self, key: str, default: Any = None) -> Any:
        """A preference value, or ``default``."""
        return self.preferences.get(key, default)

    def store_intermediate_result(self, key: str, value: Any) -> None:
        """Keep an intermediate result under ``key``; the value must be JSON."""
        self._put("intermediate_results", key, value)

    def get_intermediate_result(self, key: str, default: Any = None) -> Any:
        """An intermediate result, or ``default``."""
        return self.intermediate_results.get(key, default)

    def set_metadata(self, key: str, value: Any) -> None:
        """Set a metadata key; the value must be JSON."""
        self._put("metadata", key, value)


class Baseline(NamedTuple):
    """What a session looked like when it was read; the store diffs against it.

    ``sections`` holds each state value as :func:`to_json` text: a value is unchanged
    exactly when it encodes to the same text (``1``, ``1.0`` and ``true`` differ), and the
    caller's later in-place edits cannot reach the baseline.
    """

    version: int
    query_ids: tuple[UUID, ...]
    sections: dict[str, dict[str, str]]
    assets: list[str]
    tags: list[str]
    expires_at: datetime


class Session(BaseModel):
    """An analysis session: assets under study, accumulated state, lifecycle timestamps."""

    model_config = ConfigDict(validate_assignment=True)
    _baseline: Baseline | None = PrivateAttr(default=None)
    DEFAULT_TTL_HOURS: ClassVar[float] = 24
    """The TTL of a session built without ``expires_at`` (the store uses its settings)."""

    id: UUID = Field(default_factory=uuid4)
    user_id: str | None = None
    type: SessionType
    assets: list[str]
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=lambda fields: _default_expiry(fields))
    last_accessed_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    archived_at: datetime | None = None
    version: int = 0
    state: SessionState = Field(default_factory=SessionState)

    @field_validator("created_at", "expires_at", "last_accessed_at", "closed_at", "archived_at")
    @classmethod
    def _utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None or from_store(info):  # every backend stores UTC
            return value
        return as_utc(value)

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if from_store(info) else check_user_id(value)

    @field_validator("assets")
    @classmethod
    def _assets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return value if from_store(info) else normalize_assets(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return value if from_store(info) else normalize_tags(value)

    @property
    def session_type(self) -> SessionType:
        """Alias of ``type``."""
        return self.type

    @property
    def is_expired(self) -> bool:
        """True once the session is past its TTL (closed sessions end when closed)."""
        return utcnow() >= self.expires_at

    @property
    def is_archived(self) -> bool:
        """True once the session has moved to the archive."""
        return self.archived_at is not None

    @property
    def is_closed(self) -> bool:
        """True if the session's user finished it (as opposed to letting it expire)."""
        return self.closed_at is not None

    @property
    def status(self) -> SessionStatus:
        """Archived, closed, expired or active, in that order of precedence."""
        if self.is_archived:
            return SessionStatus.ARCHIVED
        if self.is_closed:
            return SessionStatus.CLOSED
        return SessionStatus.EXPIRED if self.is_expired else SessionStatus.ACTIVE

    @property
    def time_remaining(self) -> timedelta:
        """Time until expiry; zero once expired."""
        return max(self.expires_at - utcnow(), timedelta(0))

    @property
    def duration(self) -> timedelta:
        """From creation to the end (closed, or last activity if it expired) or to now."""
        end = self.closed_at or (self.last_accessed_at if self.is_expired else utcnow())
        return max(end - self.created_at, timedelta(0))

    def extend(self, hours: float) -> None:
        """Push expiry ``hours`` later (the store checks it against the maximum TTL)."""
        if not isinstance(hours, int | float) or not math.isfinite(hours) or hours <= 0:
            raise InvalidInputError("hours", hours, "must be a positive number of hours")
        self.expires_at = self.expires_at + timedelta(hours=hours)

    def touch(self) -> None:
        """Record activity now."""
        self.last_accessed_at = utcnow()

    def add_query(self, query: QueryRecord) -> None:
        """Record a query in the history and touch the session."""
        self.state.history.add_query(query)
        self.touch()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (UUIDs and datetimes as strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """Rebuild a session from :meth:`to_dict` output."""
        return cls.model_validate(data)

    def mark_baseline(self, sections: dict[str, dict[str, str]] | None = None) -> None:
        """Remember the current content as what the store holds (used by the store).

        ``sections`` may give the state values as the :func:`to_json` text they were
        read from (the backend's own copy), which saves encoding them again.
        """
        state = self.state
        if sections is None:
            sections = {}
            for name in STATE_SECTIONS:
                values: dict[str, Any] = getattr(state, name)
                sections[name] = {key: to_json(value) for key, value in values.items()}
        self._baseline = Baseline(
            self.version,
            tuple([q.id for q in state.history.queries]),  # hashed only on a write
            sections,
            list(self.assets),
            list(self.tags),
            self.expires_at,
        )

    @property
    def baseline(self) -> Baseline | None:
        """What the session looked like when last read from or written to the store."""
        return self._baseline


def _default_expiry(fields: dict[str, Any]) -> datetime:
    """``Session.DEFAULT_TTL_HOURS`` after the session's creation, as the original models
    defaulted it (``created_at`` is missing here only if it failed its own validation)."""
    created: datetime = fields.get("created_at") or utcnow()
    return created + timedelta(hours=Session.DEFAULT_TTL_HOURS)


def session_from_store(
    fields: dict[str, Any],
    *,
    sections: dict[str, dict[str, str]] | None = None,
    baseline: bool = True,
) -> Session:
    """A session from the fields (and nested state) a backend stored, validated under
    :data:`FROM_STORE`, its baseline marked: it is what the store holds.

    ``sections`` are the state values as the :func:`to_json` text the backend read, if it
    has them (see :meth:`Session.mark_baseline`); ``baseline=False`` leaves the baseline
    unmarked, for a copy nobody writes back through the store (archival).
    """
    session = Session.model_validate(fields, context=FROM_STORE)
    if baseline:
        session.mark_baseline(sections)
    return session


class SessionSummary(BaseModel):
    """A light view of a session for listings."""

    id: UUID
    user_id: str | None
    type: SessionType
    assets: list[str]
    tags: list[str]
    status: SessionStatus
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    closed_at: datetime | None = None
    archived_at: datetime | None = None
    total_queries: int
    is_expired: bool
    is_archived: bool

    @classmethod
    def from_session(cls, session: Session) -> SessionSummary:
        """Summarize a session."""
        return cls(
            id=session.id,
            user_id=session.user_id,
            type=session.type,
            assets=list(session.assets),
            tags=list(session.tags),
            status=session.status,
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_accessed_at=session.last_accessed_at,
            closed_at=session.closed_at,
            archived_at=session.archived_at,
            total_queries=session.state.history.total_queries,
            is_expired=session.is_expired,
            is_archived=session.is_archived,
        )
