"""SessionStore: the session API, its lifecycle and TTL policy, and active -> archive routing.

The store validates every argument before anything is written, turns a caller's edited
:class:`~fiml.sessions.models.Session` into the smallest write (only what changed since it
was read, :mod:`fiml.sessions.changes`), and routes between the active tier (SQL or Redis)
and the archive (SQL), each behind its Protocol (:mod:`fiml.sessions.backends.base`).

Lifecycle: *active* -> (*closed* by its user | *expired* past its TTL) -> *archived* by
cleanup -> deleted after the retention period. Closed and expired sessions stay readable
and refuse writes until they are archived. Whether a session has expired is the store's
clock's to say (``SessionStore(clock=...)``; the system's by default).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from fiml.core.audit import audit
from fiml.core.config import Settings
from fiml.core.errors import InvalidInputError, SessionArchivedError, SessionNotFoundError
from fiml.core.metrics import recorder
from fiml.sessions.archival import CleanupReport
from fiml.sessions.backends.base import (
    HistoryCounters,
    SessionChanges,
)
from fiml.sessions.changes import changes_since_read, rebase, state_changes
from fiml.sessions.events import RecordedQuote
from fiml.sessions.identifiers import parse_session_id, parse_session_type
from fiml.sessions.instrumented import instrument_operations
from fiml.sessions.limits import (
    check_batch_size,
    check_bool,
    check_hours,
    check_number,
    check_query,
    check_user_id,
    normalize_assets,
    normalize_tags,
)
from fiml.sessions.models import QueryRecord, Session, SessionSummary, SessionType
from fiml.sessions.paging import (
    ALL_QUERIES,
    MAX_PAGE,
    HistoryPage,
    SessionPage,
    checked_cursor,
    checked_history_limit,
    checked_offset,
    checked_page_limit,
    merged_listings,
)
from fiml.sessions.quarantine import QuarantinedSession
from fiml.sessions.search import SessionSearch
from fiml.sessions.tiers import TieredStore
from fiml.sessions.timeline import (
    ForkPoint,
    TimelinePage,
    checked_fork_point,
    decode_timeline_cursor,
    events_up_to,
    replayed_state,
)

__all__ = [
    "ALL_QUERIES",
    "MAX_PAGE",
    "CleanupReport",
    "HistoryPage",
    "SessionPage",
    "SessionStore",
    "changes_since_read",
    "get_session_store",
    "parse_session_id",
    "parse_session_type",
]

MAX_RETENTION_DAYS = 36_500
"""A hundred years: an older cut-off would fall before the first year a datetime can hold."""


class SessionStore(TieredStore):
    """Create, read, update, list, extend, close, archive and clean up analysis sessions.

    ``SessionStore()`` with no arguments uses :class:`~fiml.core.config.Settings` from the
    environment; with nothing configured that is a SQLite file in the user's data
    directory. Call :meth:`initialize` (or use ``async with``) before anything else.

    ``clock`` (a function of no arguments returning a timezone-aware datetime; default:
    the system's UTC time) is the store's "now": for creation and expiry times, for
    refusing writes to expired sessions, for what a listing reports as expired, and for
    what cleanup and retention find due. A :class:`~fiml.sessions.models.Session`'s own
    properties (``is_expired``, ``status``, ``time_remaining``) read the system time.
    """

    async def create_session(
        self,
        assets: Sequence[str],
        session_type: SessionType | str,
        user_id: str | None = None,
        ttl_hours: float | None = None,
        tags: Sequence[str] | None = None,
        preferences: dict[str, Any] | None = None,
    ) -> Session:
        """Open a session on ``assets``; it expires ``ttl_hours`` from now (fractions allowed).

        ``preferences`` are the session's first preference keys, checked as
        :meth:`update_state` checks them and written with the session (a template's)."""
        kind = parse_session_type(session_type)
        ttl = self.settings.session_default_ttl_hours if ttl_hours is None else ttl_hours
        ttl = check_hours("ttl_hours", ttl, maximum=self.settings.session_max_ttl_hours)
        user = check_user_id(user_id)
        first = (
            {}
            if preferences is None or preferences == {}
            else state_changes(
                context=None, preferences=preferences, intermediate_results=None, remove_context=()
            ).set_keys["preferences"]
        )
        now = self.now()
        session = Session(
            user_id=user,
            type=kind,
            assets=normalize_assets(list(assets) if isinstance(assets, tuple) else assets),
            tags=normalize_tags(list(tags) if isinstance(tags, tuple) else tags),
            created_at=now,
            last_accessed_at=now,
            expires_at=now + timedelta(hours=ttl),
        )
        session.state.preferences.update(first)
        await self.backend.insert(session)
        session.mark_baseline()
        recorder().session_created(kind.value)
        audit("create", session_id=session.id, owner=user, session_type=kind.value)
        return session

    async def get_session(
        self, session_id: UUID | str, *, history_limit: int | None = None
    ) -> Session | None:
        """A session, active or archived, or None if there is none.

        Loads the ``history_limit`` most recent queries (default: the
        ``session_recent_queries`` setting; :data:`ALL_QUERIES` for all). The history's
        counters always cover every query.
        """
        return await self._load(parse_session_id(session_id), history_limit, owner=None)

    async def get_user_session(
        self, session_id: UUID | str, user_id: str, *, history_limit: int | None = None
    ) -> Session | None:
        """``user_id``'s session ``session_id`` (as :meth:`get_session` reads it), or None
        when there is none or it is someone else's, after the same reads either way.

        A reply that takes longer for an unknown id than for another user's would tell
        a caller which ids exist. So each tier is asked for the caller's session only
        (``load(owner=...)``): another user's session is not found by the same read that
        finds nothing at an unknown id, and on Redis+SQL both then get the same archive
        probe. The caller's own sessions are read as :meth:`get_session` reads them.
        """
        sid = parse_session_id(session_id)
        if not isinstance(user_id, str):
            raise InvalidInputError("user_id", user_id, "must be a string")
        return await self._load(sid, history_limit, owner=user_id)

    async def _load(
        self, session_id: UUID, history_limit: int | None, *, owner: str | None
    ) -> Session | None:
        """The active tier's session, else (tiered) the archive's; ``owner``: only theirs."""
        recent = self._recent(history_limit)
        session = await self.backend.load(session_id, recent_queries=recent, owner=owner)
        if session is None and self._tiered:
            session = await self.archive.load(session_id, recent_queries=recent, owner=owner)
        return session  # its baseline marked by the backend (models.session_from_store)

    def _recent(self, history_limit: int | None) -> int | None:
        """How many recent queries a read loads (None: all), from its ``history_limit``."""
        if history_limit is None:
            return self.settings.session_recent_queries
        return checked_history_limit(history_limit)

    async def get_query(self, session_id: UUID | str, query_id: UUID) -> QueryRecord | None:
        """The query ``query_id`` as ``session_id`` recorded it (active or archived), or
        None if the session is gone or never recorded it.

        It reads the session's whole history (at most the configured maximum of queries
        per session): it is for the rare question of what a repeated query id stood for
        (:func:`~fiml.mcp.tracking.track_query_in_session`), not for a hot path.
        """
        sid = parse_session_id(session_id)
        if not isinstance(query_id, UUID):
            raise InvalidInputError("query_id", query_id, "must be a UUID")
        session = await self.get_session(sid, history_limit=ALL_QUERIES)
        if session is None:
            return None
        return next((q for q in session.state.history.queries if q.id == query_id), None)

    async def get_history(
        self, session_id: UUID | str, *, offset: int = 0, limit: int = 50
    ) -> HistoryPage:
        """A page of a session's queries, oldest first; ``next_offset`` continues it."""
        sid = parse_session_id(session_id)
        limit = checked_page_limit(limit)
        offset = checked_offset(offset)
        session = await self.get_session(sid, history_limit=0)
        if session is None:
            raise SessionNotFoundError(sid)
        source = self.archive if session.is_archived and self._tiered else self.backend
        queries = await source.load_history(sid, offset=offset, limit=limit)
        return HistoryPage.of(session, queries, offset=offset)

    async def _apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime | None = None
    ) -> HistoryCounters:
        at = self.now() if now is None else now
        try:
            return await self.backend.apply(session_id, changes, now=at, limits=self.limits)
        except SessionNotFoundError:
            if self._tiered and await self.archive.load(session_id, recent_queries=0):
                raise SessionArchivedError(session_id) from None
            raise

    async def update_session(
        self, session_id: UUID | str, session: Session, *, strict: bool = False
    ) -> Session:
        """Save what the caller changed on ``session`` since it was read.

        Only the changes are written: new queries are appended, changed or removed state
        keys and the elements added to or removed from ``assets`` and ``tags``
        (:class:`~fiml.sessions.backends.base.ListChange`) are merged into what is stored,
        so concurrent writers never lose each other's work. With ``strict=True`` the write
        is refused with SessionConflictError if anyone else wrote the session since it was
        read. Returns ``session``, re-based on the stored version.
        """
        sid = parse_session_id(session_id)
        if not isinstance(session, Session):
            raise InvalidInputError("session", session, "must be a Session")
        if session.id != sid:
            raise InvalidInputError("session", str(session.id), f"is not session {sid}")
        check_bool("strict", strict)
        now = self.now()
        changes = changes_since_read(session, strict=strict, now=now)
        counters = await self._apply(sid, changes, now=now)
        rebase(session, changes, counters, now=now)
        return session

    async def append_query(
        self,
        session_id: UUID | str,
        query: QueryRecord,
        *,
        context: dict[str, Any] | None = None,
        quote: RecordedQuote | None = None,
    ) -> HistoryCounters:
        """Track one query atomically; returns the history's counters after it.

        Idempotent by the query's id: sending a query that is already recorded changes
        no counter and reports ``added_queries == 0``, so a retried write counts once.
        ``context`` sets those context keys in the same write (one transaction, or one
        script on Redis), checked as :meth:`update_state` checks them: the query and its
        context are stored together or, if either is refused, neither is.
        ``quote`` is what the query answered, kept on the session's timeline with it
        (:mod:`fiml.sessions.events`).
        """
        sid = parse_session_id(session_id)
        if not isinstance(query, QueryRecord):
            raise InvalidInputError("query", query, "must be a QueryRecord")
        check_query(query)
        changes = SessionChanges(new_queries=[query])
        if quote is not None:
            if not isinstance(quote, RecordedQuote):
                raise InvalidInputError("quote", quote, "must be a RecordedQuote")
            changes.quotes[query.id] = quote
        if context is not None and (context or not isinstance(context, dict)):
            changes.set_keys = state_changes(
                context=context, preferences=None, intermediate_results=None, remove_context=()
            ).set_keys
        return await self._apply(sid, changes)

    async def get_timeline(
        self, session_id: UUID | str, *, limit: int = 50, cursor: str | None = None
    ) -> TimelinePage:
        """A page of a session's timeline (active or archived), in order; ``next_cursor``
        continues it. Reading it never asks a provider for anything."""
        sid = parse_session_id(session_id)
        limit = checked_page_limit(limit)
        after = decode_timeline_cursor(cursor)
        session = await self.get_session(sid, history_limit=0)
        if session is None:
            raise SessionNotFoundError(sid)
        source = self.archive if session.is_archived and self._tiered else self.backend
        events = await source.load_events(sid, after=after, limit=limit + 1)
        if not events and source is self.backend and self._tiered:
            # Archived between the two reads: the timeline moved with the session.
            events = await self.archive.load_events(sid, after=after, limit=limit + 1)
        return TimelinePage.of(events, limit=limit)

    async def fork_session(
        self,
        session_id: UUID | str,
        user_id: str,
        *,
        after_queries: int | None = None,
        at: datetime | None = None,
    ) -> Session:
        """A new session of ``user_id``'s, from ``session_id`` as it stood after query
        ``after_queries`` or at time ``at`` (neither: as it stands now); see
        :mod:`fiml.sessions.timeline`. The caller checks that ``user_id`` may read the
        origin. It gets the default TTL from now."""
        sid = parse_session_id(session_id)
        user = cast(str, check_user_id(user_id, optional=False))
        point = checked_fork_point(after_queries, at)
        origin = await self.get_session(sid, history_limit=ALL_QUERIES)
        if origin is None:
            raise SessionNotFoundError(sid)
        history = origin.state.history
        if point.after_queries is not None and point.after_queries > history.total_queries:
            raise InvalidInputError(
                "after_queries",
                point.after_queries,
                f"must be at most {history.total_queries}, the queries the session holds",
            )
        if point.at is not None and point.at < origin.created_at:
            raise InvalidInputError("at", point.at.isoformat(), "is before the session began")
        source = self.archive if origin.is_archived and self._tiered else self.backend
        timeline = await source.load_events(sid, after=0, limit=2**31 - 1)
        events, queries = events_up_to(timeline, history.queries, point)
        now = self.now()
        state = (
            replayed_state(events)
            if point != ForkPoint()
            else {
                "context": dict(origin.state.context),
                "preferences": dict(origin.state.preferences),
            }
        )
        fork = Session(
            user_id=user,
            type=origin.type,
            assets=list(origin.assets),
            tags=list(origin.tags),
            created_at=now,
            last_accessed_at=now,
            expires_at=now + timedelta(hours=self.settings.session_default_ttl_hours),
        )
        fork.state.context.update(state["context"])
        fork.state.preferences.update(state["preferences"])
        fork.state.metadata["forked_from"] = {"session_id": str(sid), **point.as_metadata()}
        for query in queries:
            fork.state.history.add_query(query)
        await self.backend.insert(fork, events)
        fork.mark_baseline()
        recorder().session_created(fork.type.value)
        audit("fork", session_id=fork.id, owner=user, origin=str(sid))
        return fork

    async def update_state(
        self,
        session_id: UUID | str,
        *,
        context: dict[str, Any] | None = None,
        preferences: dict[str, Any] | None = None,
        intermediate_results: dict[str, Any] | None = None,
        remove_context: Sequence[str] = (),
    ) -> HistoryCounters:
        """Set (and remove) state keys atomically without reading the session first."""
        sid = parse_session_id(session_id)
        changes = state_changes(
            context=context,
            preferences=preferences,
            intermediate_results=intermediate_results,
            remove_context=remove_context,
        )
        return await self._apply(sid, changes)

    async def extend_session(self, session_id: UUID | str, hours: float) -> Session:
        """Push expiry ``hours`` later; the result may not exceed the maximum TTL from now."""
        sid = parse_session_id(session_id)
        hours = check_hours("hours", hours, maximum=self.settings.session_max_ttl_hours)
        await self._apply(sid, SessionChanges(extend_by=timedelta(hours=hours)))
        audit("extend", session_id=sid, hours=hours)
        return await self._reload(sid)

    async def close_session(self, session_id: UUID | str) -> Session:
        """Mark a session finished by its user; it becomes read-only and is archived next."""
        sid = parse_session_id(session_id)
        await self._apply(sid, SessionChanges(close=True))
        audit("close", session_id=sid)
        closed = await self._reload(sid)
        recorder().session_closed(closed.type.value)
        return closed

    async def _reload(self, session_id: UUID) -> Session:
        session = await self.get_session(session_id)
        if session is None:
            raise SessionNotFoundError(session_id)
        return session

    async def delete_session(self, session_id: UUID | str) -> bool:
        """Delete a session (active or archived) and its history; False if there was none."""
        sid = parse_session_id(session_id)
        deleted = await self.backend.delete(sid)
        if self._tiered:
            deleted = await self.archive.delete(sid) or deleted
        audit("delete", session_id=sid, outcome="ok" if deleted else "absent")
        return deleted

    async def list_user_sessions(
        self, user_id: str, include_archived: bool = False, limit: int = 100
    ) -> list[SessionSummary]:
        """A user's ``limit`` newest sessions; :meth:`list_user_sessions_page` pages on."""
        page = await self.list_user_sessions_page(
            user_id, include_archived=include_archived, limit=limit
        )
        return page.sessions

    async def list_user_sessions_page(
        self,
        user_id: str,
        *,
        include_archived: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of a user's sessions, newest first; pass ``next_cursor`` for the next.
        Which of them have expired is judged by the store's clock."""
        user = cast(str, check_user_id(user_id, optional=False))
        check_bool("include_archived", include_archived)
        limit = checked_page_limit(limit)
        position = checked_cursor(cursor)
        found = await self.backend.list_user(
            user, include_archived=include_archived, limit=limit + 1, cursor=position
        )
        if include_archived and self._tiered:
            archived = await self.archive.list_user(
                user, include_archived=True, limit=limit + 1, cursor=position
            )
            found = merged_listings(found, archived)
        return SessionPage.of(found, limit=limit, now=self._own_time())

    async def search_user_sessions(
        self,
        user_id: str,
        *,
        asset: str | None = None,
        tag: str | None = None,
        session_type: SessionType | str | None = None,
        text: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        include_archived: bool = True,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of ``user_id``'s sessions that match every criterion given, newest first;
        pass ``next_cursor`` for the next. The rules of each criterion are
        :mod:`fiml.sessions.search`'s; archived sessions are searched too unless
        ``include_archived`` is false."""
        user = cast(str, check_user_id(user_id, optional=False))
        search = SessionSearch.checked(
            asset=asset,
            tag=tag,
            session_type=session_type,
            text=text,
            since=since,
            until=until,
            include_archived=include_archived,
        )
        limit = checked_page_limit(limit)
        position = checked_cursor(cursor)
        found = await self.backend.search_user(user, search, limit=limit + 1, cursor=position)
        if include_archived and self._tiered:
            archived = await self.archive.search_user(
                user, search, limit=limit + 1, cursor=position
            )
            found = merged_listings(found, archived)
        return SessionPage.of(found, limit=limit, now=self._own_time())

    async def archive_session(self, session_id: UUID | str) -> bool:
        """Archive one session now, ending it if it is still running; False if it was
        archived already. If archiving fails, the session is left exactly as it was."""
        sid = parse_session_id(session_id)
        session = await self.get_session(sid, history_limit=0)
        if session is None:
            raise SessionNotFoundError(sid)
        if session.is_archived:
            return False
        archived = await self.archiver.archive_now(sid, now=self.now())
        audit("archive", session_id=sid, outcome="ok" if archived else "absent")
        return archived

    async def cleanup_expired_sessions(self, *, batch_size: int = 1000) -> CleanupReport:
        """Archive every session that has expired or was closed; says how many were
        archived, failed (the archive is unreachable: retried next run) and quarantined.

        Idempotent and safe to run concurrently: each session is archived, and counted,
        exactly once across all runs. Nothing is removed that is not in the archive.
        """
        batch_size = check_batch_size(batch_size)
        report = await self.archiver.cleanup(batch_size=batch_size, clock=self.now)
        if report.archived or report.failed or report.quarantined:
            audit(
                "archive",
                outcome="ok" if report.ok else "partial",
                count=report.archived,
                failed=report.failed,
                quarantined=report.quarantined,
            )
        return report

    async def list_quarantined(
        self, *, limit: int = 100, user_id: str | None = None
    ) -> list[QuarantinedSession]:
        """Sessions archival could not move, longest-failing first (for an operator)."""
        limit = checked_page_limit(limit)
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise InvalidInputError("user_id", user_id, "must be a non-empty string")
        return await self.archive.list_quarantined(limit=limit, user_id=user_id)

    async def prepare_archive(self) -> int:
        """Create the archive's partitions due by now (PostgreSQL: the current month's and
        the next two); returns how many were missing."""
        return await self.archive.ensure_partitions(now=self.now())

    async def delete_old_archived_sessions(self, *, retention_days: float | None = None) -> int:
        """Delete archives older than the retention period; returns how many."""
        days = self.settings.session_retention_days if retention_days is None else retention_days
        days = check_number("retention_days", days, minimum=0, maximum=MAX_RETENTION_DAYS)
        deleted = await self.archive.delete_archived_before(self.now() - timedelta(days=days))
        if deleted:
            audit("retention", count=deleted, retention_days=days)
        return deleted


instrument_operations(
    SessionStore,
    (
        "create_session",
        "get_session",
        "get_user_session",
        "get_query",
        "get_history",
        "update_session",
        "append_query",
        "update_state",
        "get_timeline",
        "fork_session",
        "extend_session",
        "close_session",
        "delete_session",
        "list_user_sessions",
        "list_user_sessions_page",
        "search_user_sessions",
        "archive_session",
        "cleanup_expired_sessions",
        "list_quarantined",
        "delete_old_archived_sessions",
    ),
)

_default_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionStore] = (
    weakref.WeakKeyDictionary()
)


async def get_session_store(settings: Settings | None = None) -> SessionStore:
    """An initialized store for the current event loop, built from ``settings`` once.

    A convenience for scripts; applications should construct :class:`SessionStore`
    themselves and pass it where it is needed.
    """
    loop = asyncio.get_running_loop()
    store = _default_stores.get(loop)
    if store is None:
        store = SessionStore(settings)
        _default_stores[loop] = store
    await store.initialize()
    return store
