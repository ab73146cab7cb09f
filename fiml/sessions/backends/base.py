"""The contract between :class:`~fiml.sessions.store.SessionStore` and its two tiers.

The *active tier* (:class:`ActiveTier`: Redis, or the one SQL database) holds running
sessions, where writes are atomic per session: every write checks that the session exists
and is writable, applies only what changed, and bumps its version, in one transaction (SQL)
or one script (Redis). The *archive tier* (:class:`ArchiveTier`: always SQL) holds finished
sessions and their analytics facts; on SQL-only deployments it is the same object as the
active tier. Each Protocol has only what the store, archival and analytics call. Backends
never validate user input; the store does that before calling them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from fiml.core.errors import InvalidCursorError, InvalidInputError
from fiml.sessions.events import RecordedQuote, SessionEvent
from fiml.sessions.models import MAX_ASSETS, MAX_TAGS, QueryRecord, Session, SessionSummary

if TYPE_CHECKING:  # the archive's types, which only its SQL implementation builds
    from fiml.sessions.backends.sql import ArchivedInPlace
    from fiml.sessions.metrics import MetricFilters, SessionFacts
    from fiml.sessions.metrics_backfill import BackfillReport
    from fiml.sessions.metrics_rows import RecordedRows
    from fiml.sessions.metrics_stats import FinishedStats
    from fiml.sessions.quarantine import QuarantinedSession
    from fiml.sessions.search import SessionSearch
    from fiml.sessions.sharing import Share
    from fiml.sessions.templates import SessionTemplate

__all__ = [
    "LIST_SIZES",
    "ActiveTier",
    "ArchiveTier",
    "ExportedSessions",
    "HistoryCounters",
    "ListChange",
    "ListCursor",
    "SessionChanges",
    "SharingRecords",
    "WriteLimits",
    "list_size_error",
]


@dataclass(frozen=True, slots=True)
class WriteLimits:
    """What the settings allow a write to do, checked inside the atomic write."""

    max_queries: int
    max_ttl: timedelta
    sliding_ttl: bool = False
    """Each write slides the expiry (``rules.slid_expiry``), up to ``max_ttl`` from creation."""


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
    quotes: dict[UUID, RecordedQuote] = field(default_factory=dict)
    """The recorded quote of each new query that has one, by query id, for its timeline
    event (:mod:`fiml.sessions.events`)."""

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
    events: dict[UUID, list[SessionEvent]] = field(default_factory=dict)
    """Each exported session's timeline, which the archive stores with it."""


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


class _Tier(Protocol):
    """What every tier offers: its name (in errors), and connecting and closing."""

    name: str

    async def initialize(self) -> None:
        """Connect, and create or check the schema if the tier has one."""

    async def close(self) -> None:
        """Release connections."""

    async def load(
        self, session_id: UUID, *, recent_queries: int | None, owner: str | None = None
    ) -> Session | None:
        """A session with its ``recent_queries`` latest queries (None: all), or None; its
        baseline marked (``models.session_from_store`` does it).

        With an ``owner``, a session of anyone else's is None too, found by the very read
        that finds no session at an unknown id: nothing of it is fetched or decoded, so a
        foreign id costs what an unknown one does."""

    async def load_history(self, session_id: UUID, *, offset: int, limit: int) -> list[QueryRecord]:
        """Queries ``offset+1 .. offset+limit`` of a session's history, oldest first."""

    async def delete(self, session_id: UUID) -> bool:
        """Remove a session and its history; False if there was none."""

    async def load_events(self, session_id: UUID, *, after: int, limit: int) -> list[SessionEvent]:
        """Up to ``limit`` events of a session's timeline after the ``after``-th, in order
        (none for a session this tier does not hold)."""

    async def list_user(
        self,
        user_id: str,
        *,
        include_archived: bool,
        limit: int,
        cursor: ListCursor | None,
    ) -> list[SessionSummary]:
        """Up to ``limit`` of a user's sessions, newest first, after ``cursor``."""

    async def search_user(
        self, user_id: str, search: SessionSearch, *, limit: int, cursor: ListCursor | None
    ) -> list[SessionSummary]:
        """Up to ``limit`` of a user's sessions matching ``search`` (its rules:
        :mod:`fiml.sessions.search`), newest first, after ``cursor``."""


class ActiveTier(_Tier, Protocol):
    """Where running sessions live and are written: Redis, or the one SQL database."""

    async def insert(self, session: Session, events: Sequence[SessionEvent] = ()) -> None:
        """Store a new session (with any queries it already holds, and the timeline
        ``events`` it starts with: a fork's copy of its origin's)."""

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply ``changes`` atomically, or raise and change nothing.

        Raises SessionNotFoundError, SessionArchivedError, SessionClosedError,
        SessionExpiredError, SessionConflictError, QueryLimitExceededError, InvalidTTLError.
        """

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
        """Drop sessions that the archive tier now holds; returns how many were here."""


class SharingRecords(Protocol):
    """Grants of read access and users' templates, kept with the archive (always SQL)."""

    async def grant_share(self, share: Share, *, max_readers: int) -> bool:
        """Record a grant; False if the reader had it already."""

    async def revoke_share(self, session_id: UUID, reader_id: str) -> bool:
        """Remove a grant; False if there was none."""

    async def share_owner(self, session_id: UUID, reader_id: str) -> str | None:
        """The owner of ``session_id`` if it is shared with ``reader_id``, else None."""

    async def list_shares(
        self, reader_id: str, *, limit: int, after: ListCursor | None
    ) -> list[Share]:
        """The grants to ``reader_id``, most recently granted first, after ``after``."""

    async def forget_shares(self, grants: list[tuple[UUID, str]]) -> None:
        """Drop grants (session id, reader id) whose session is gone."""

    async def save_template(
        self, user_id: str, template: SessionTemplate, *, max_templates: int
    ) -> None:
        """Store a template, replacing the user's of the same name."""

    async def load_template(self, user_id: str, name: str) -> SessionTemplate | None:
        """The user's template ``name``, or None."""

    async def list_templates(
        self, user_id: str, *, limit: int, after: str | None
    ) -> list[SessionTemplate]:
        """The user's templates in name order, after the name ``after``."""


class ArchiveTier(_Tier, SharingRecords, Protocol):
    """Where finished sessions and their analytics facts are kept: always SQL."""

    async def archive_in_place(
        self,
        session_ids: Sequence[UUID],
        *,
        now: datetime,
        end_now: bool = False,
        record_facts: bool = False,
    ) -> ArchivedInPlace:
        """Mark due sessions archived where they are (the archive is the active tier),
        with their facts in the same transaction; each is counted by exactly one caller."""

    async def import_archived(
        self,
        sessions: Sequence[Session],
        *,
        archived_at: datetime,
        record_facts: bool = False,
        events: dict[UUID, list[SessionEvent]] | None = None,
    ) -> tuple[int, int]:
        """Copy sessions (and their timelines, ``events``) from the active tier;
        re-copying adds nothing. Returns how many
        sessions this call inserted and how many sessions' facts it recorded."""

    async def quarantine(
        self, failures: dict[UUID, tuple[str | None, str]], *, now: datetime
    ) -> None:
        """Record sessions archival could not move (id -> (user id, reason))."""

    async def list_quarantined(
        self, *, limit: int, user_id: str | None = None
    ) -> list[QuarantinedSession]:
        """The quarantined sessions, longest-failing first."""

    async def delete_archived_before(self, cutoff: datetime, *, batch_size: int = 1000) -> int:
        """Delete sessions archived before ``cutoff`` (quarantined ones are kept)."""

    async def ensure_partitions(self, *, now: datetime) -> int:
        """Create the archive's partitions due by ``now`` (PostgreSQL's monthly ones, the
        current month and two ahead); returns how many it created."""

    async def record_metrics(self, facts: Sequence[SessionFacts], *, recorded_at: datetime) -> None:
        """Record ``facts``, replacing whatever was recorded for the same sessions before."""

    async def record_unrecorded_archived(
        self, *, now: datetime, archived_since: datetime | None, batch_size: int
    ) -> BackfillReport:
        """Record every archived session (archived at or after ``archived_since``) that has
        no facts yet; records that cannot be read are skipped and reported."""

    async def finished_stats(
        self, filters: MetricFilters, since: datetime, *, top: int
    ) -> FinishedStats:
        """Aggregates over the recorded sessions created at or after ``since``, read in one
        snapshot so that they agree with each other."""

    async def recent_finished(
        self, filters: MetricFilters, since: datetime, *, limit: int
    ) -> RecordedRows:
        """The ``limit`` most recently created recorded sessions of the window (newest
        first), and the records passed over because they cannot be read."""

    async def export_rows(self, filters: MetricFilters, since: datetime) -> RecordedRows:
        """Every recorded session of the window with its assets, tags and query-type
        counts (oldest first), and the records left out because they cannot be read."""
