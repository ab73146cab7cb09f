"""The contract between :class:`~fiml.sessions.store.SessionStore` and a storage backend.

A backend keeps sessions where writes are atomic per session: every write checks that the
session exists and is writable, applies only what changed, and bumps its version, in one
transaction (SQL) or one script (Redis). Backends never validate user input; the store
does that before calling them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from fiml.core.errors import InvalidCursorError, InvalidInputError
from fiml.sessions.models import MAX_ASSETS, MAX_TAGS, QueryRecord, Session, SessionSummary

__all__ = [
    "LIST_SIZES",
    "ExportedSessions",
    "HistoryCounters",
    "ListChange",
    "ListCursor",
    "SessionBackend",
    "SessionChanges",
    "WriteLimits",
    "list_size_error",
]


@dataclass(frozen=True, slots=True)
class WriteLimits:
    """What the settings allow a write to do, checked inside the atomic write."""

    max_queries: int
    max_ttl: timedelta


@dataclass(frozen=True, slots=True)
class ListChange:
    """One writer's edit of a stored list (``assets``, ``tags``) relative to what it read.

    The backend merges it into what is stored now, inside its atomic write: the stored
    order is kept, ``removed`` elements are dropped, ``added`` ones are appended unless
    already there. So an element's fate is decided by the last write that added or
    removed it, and writers who did not touch it leave it alone. ``replace`` drops every
    stored element first: the list is set whole (a session its caller built, no baseline).
    """

    added: list[str]
    removed: list[str] = field(default_factory=list)
    replace: bool = False

    @classmethod
    def between(cls, before: list[str] | None, after: list[str]) -> ListChange | None:
        """The edit from ``before`` (None: nothing was read) to ``after``; None when no
        element was added or removed (a new order alone is not an edit)."""
        if before is None:
            return cls(list(after), replace=True)
        had, has = set(before), set(after)
        added = [x for x in after if x not in had]
        removed = [x for x in before if x not in has]
        return cls(added, removed) if added or removed else None


LIST_SIZES = {"assets": (1, MAX_ASSETS), "tags": (0, MAX_TAGS)}
"""How many elements each list may hold once a write's :class:`ListChange` is merged."""


def list_size_error(name: str, size: int) -> InvalidInputError:
    """The refusal of a write after whose merge list ``name`` would hold ``size`` elements."""
    low, high = LIST_SIZES[name]
    return InvalidInputError(
        name, size, f"must hold {low}-{high} after merging this write with concurrent ones"
    )


@dataclass(slots=True)
class SessionChanges:
    """Everything one write does to a session, relative to what its writer read.

    ``set_keys``/``deleted_keys`` are per state section (``context``, ``preferences``,
    ``intermediate_results``, ``metadata``); other writers' keys are left alone.
    ``assets``/``tags`` are merged the same way, element by element (:class:`ListChange`).
    """

    new_queries: list[QueryRecord] = field(default_factory=list)
    set_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_keys: dict[str, list[str]] = field(default_factory=dict)
    assets: ListChange | None = None
    tags: ListChange | None = None
    expires_at: datetime | None = None
    extend_by: timedelta | None = None
    close: bool = False
    end_now: bool = False
    expected_version: int | None = None

    def is_empty(self) -> bool:
        """True when the write would change nothing but the access time."""
        return not (
            self.new_queries
            or any(self.set_keys.values())
            or any(self.deleted_keys.values())
            or self.assets is not None
            or self.tags is not None
            or self.expires_at is not None
            or self.extend_by is not None
            or self.close
            or self.end_now
        )


@dataclass(frozen=True, slots=True)
class HistoryCounters:
    """A session's history counters after a write."""

    total_queries: int
    cache_hits: int
    version: int
    added_queries: int = 0
    """How many of the write's queries were new; one already recorded (same id) is not."""


@dataclass(slots=True)
class ExportedSessions:
    """What an export for archival read: the sessions it could decode, the ones it could
    not (id -> why), and which sessions this export froze (only their exporter may thaw
    them, should archiving fail)."""

    sessions: list[Session] = field(default_factory=list)
    unreadable: dict[UUID, str] = field(default_factory=dict)
    frozen_here: set[UUID] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ListCursor:
    """Position after the last listed session: sessions are listed newest first."""

    created_at: datetime
    session_id: UUID

    def encode(self) -> str:
        """An opaque string for the next page."""
        raw = json.dumps([self.created_at.isoformat(), str(self.session_id)])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> ListCursor:
        """Parse a string made by :meth:`encode`; anything else is an InvalidCursorError."""
        try:
            padded = token + "=" * (-len(token) % 4)
            created, sid = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return cls(datetime.fromisoformat(created), UUID(sid))
        except (ValueError, TypeError, binascii.Error, UnicodeError):
            raise InvalidCursorError(token) from None

    @classmethod
    def after(cls, summary: SessionSummary) -> ListCursor:
        """The cursor that continues after ``summary``."""
        return cls(summary.created_at, summary.id)


class SessionBackend(Protocol):
    """Storage for sessions; one implementation per module in this package."""

    name: str

    async def initialize(self) -> None:
        """Connect, and create the schema if the backend has one and it is absent."""

    async def close(self) -> None:
        """Release connections."""

    async def insert(self, session: Session) -> None:
        """Store a new session (with any queries it already holds)."""

    async def load(self, session_id: UUID, *, recent_queries: int | None) -> Session | None:
        """A session with its ``recent_queries`` latest queries (None: all), or None; its
        baseline marked (``models.session_from_store`` does it)."""

    async def load_history(self, session_id: UUID, *, offset: int, limit: int) -> list[QueryRecord]:
        """Queries ``offset+1 .. offset+limit`` of a session's history, oldest first."""

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply ``changes`` atomically, or raise and change nothing.

        Raises SessionNotFoundError, SessionArchivedError, SessionClosedError,
        SessionExpiredError, SessionConflictError, QueryLimitExceededError, InvalidTTLError.
        """

    async def delete(self, session_id: UUID) -> bool:
        """Remove a session and its history; False if there was none."""

    async def list_user(
        self,
        user_id: str,
        *,
        include_archived: bool,
        limit: int,
        cursor: ListCursor | None,
    ) -> list[SessionSummary]:
        """Up to ``limit`` of a user's sessions, newest first, after ``cursor``."""

    async def expired_ids(self, *, now: datetime, limit: int, skip: int = 0) -> list[UUID]:
        """Ids of up to ``limit`` unarchived sessions whose expiry is at or before ``now``,
        earliest first, after the first ``skip`` of them (those a cleanup run already tried
        and left behind)."""

    async def count_active(
        self,
        *,
        now: datetime,
        user_id: str | None = None,
        session_type: str | None = None,
        created_since: datetime | None = None,
    ) -> int:
        """Sessions neither archived, closed nor past expiry, matching the filters."""

    async def export_sessions(self, session_ids: Sequence[UUID]) -> ExportedSessions:
        """The given sessions with their whole histories, frozen against writes (missing
        ids are skipped; ones that cannot be decoded are reported, not raised)."""

    async def thaw(self, session_ids: Sequence[UUID]) -> None:
        """Accept writes again on sessions an export froze whose archiving failed."""

    async def remove_archived(self, session_ids: Sequence[UUID]) -> int:
        """Drop sessions that another backend has archived; returns how many were here."""
