"""SessionStore: the session API, its lifecycle and TTL policy, and active -> archive routing.

The store validates every argument before anything is written, turns a caller's edited
:class:`~fiml.sessions.models.Session` into the smallest write (only what changed since it
was read), and routes between the active tier (SQL or Redis) and the archive (SQL).

Lifecycle: *active* -> (*closed* by its user | *expired* past its TTL) -> *archived* by
cleanup -> deleted after the retention period. Closed and expired sessions stay readable
and refuse writes until they are archived.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from pydantic import BaseModel

from fiml.core.config import Settings
from fiml.core.errors import (
    ContextValueError,
    InvalidCursorError,
    InvalidInputError,
    InvalidSessionIdError,
    InvalidSessionTypeError,
    SessionArchivedError,
    SessionNotFoundError,
)
from fiml.sessions.archival import Archiver, CleanupReport
from fiml.sessions.backends import build_backends
from fiml.sessions.backends.base import (
    HistoryCounters,
    ListChange,
    ListCursor,
    SessionBackend,
    SessionChanges,
    WriteLimits,
)
from fiml.sessions.backends.sql import SqlBackend
from fiml.sessions.limits import (
    MAX_ASSETS,
    MAX_STATE_KEYS,
    MAX_TAGS,
    check_batch_size,
    check_bool,
    check_count,
    check_hours,
    check_number,
    check_query,
    check_state_key,
    check_user_id,
    checked_labels,
    checked_state_value,
    normalize_assets,
    normalize_tags,
    to_json,
)
from fiml.sessions.models import (
    STATE_SECTIONS,
    AnalysisHistory,
    Baseline,
    QueryRecord,
    Session,
    SessionState,
    SessionSummary,
    SessionType,
    utcnow,
)
from fiml.sessions.quarantine import QuarantinedSession

__all__ = [
    "ALL_QUERIES",
    "CleanupReport",
    "HistoryPage",
    "SessionPage",
    "SessionStore",
    "get_session_store",
    "parse_session_id",
    "parse_session_type",
]

ALL_QUERIES = -1
"""Pass as ``history_limit`` to :meth:`SessionStore.get_session` to load every query."""

MAX_PAGE = 1000
MAX_OFFSET = 2**31 - 1 - MAX_PAGE
"""History positions are 32-bit integers in SQL; no page can start past this."""
MAX_HISTORY_LIMIT = 2**31 - 1
"""The most queries ``get_session`` loads when asked for a number (SQL's LIMIT is 32-bit)."""
MAX_RETENTION_DAYS = 36_500
"""A hundred years: an older cut-off would fall before the first year a datetime can hold."""
_MAX_VERSION = 2**63 - 1
_ARCHIVE_CHUNK = 500
"""Sessions archived per concurrent chunk of a cleanup batch (tiered deployments)."""

logger = logging.getLogger("fiml.sessions.store")


class SessionPage(BaseModel):
    """One page of a user's sessions, newest first, and the cursor of the next page."""

    sessions: list[SessionSummary]
    next_cursor: str | None = None


class HistoryPage(BaseModel):
    """One page of a session's query history, oldest first."""

    session_id: UUID
    queries: list[QueryRecord]
    offset: int
    total_queries: int
    next_offset: int | None = None


def parse_session_id(value: Any) -> UUID:
    """A session id as a UUID; anything that is not a UUID is an InvalidSessionIdError."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.strip())
        except ValueError:
            pass
    raise InvalidSessionIdError(value)


def parse_session_type(value: Any) -> SessionType:
    """A SessionType from an enum member or its string value."""
    if isinstance(value, SessionType):
        return value
    if isinstance(value, str):
        try:
            return SessionType(value.strip().lower())
        except ValueError:
            pass
    raise InvalidSessionTypeError(value, [t.value for t in SessionType])


def _page_limit(limit: Any) -> int:
    return check_count("limit", limit, minimum=1, maximum=MAX_PAGE)


def _history_limit(value: Any) -> int | None:
    """How many recent queries to load: a count, or None for :data:`ALL_QUERIES`."""
    if not isinstance(value, bool) and isinstance(value, int) and value == ALL_QUERIES:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HISTORY_LIMIT:
        raise InvalidInputError(
            "history_limit",
            value,
            f"must be an integer from 0 to {MAX_HISTORY_LIMIT}, or ALL_QUERIES ({ALL_QUERIES})",
        )
    return value


def _list_cursor(cursor: Any) -> ListCursor | None:
    if cursor is None or cursor == "":
        return None
    if not isinstance(cursor, str):
        raise InvalidCursorError(cursor)
    try:
        position = ListCursor.decode(cursor)
    except RecursionError:  # a cursor nesting JSON arrays thousands deep
        raise InvalidCursorError(cursor) from None
    if position.created_at.utcoffset() is None:  # cursors this store makes are in UTC
        raise InvalidCursorError(cursor)
    return position


def _state_of(session: Session) -> SessionState:
    """The session's state, checked to be one: its attributes can be replaced in place."""
    state = session.state
    if not isinstance(state, SessionState) or not isinstance(state.history, AnalysisHistory):
        raise InvalidInputError("session.state", state, "must be a SessionState with a history")
    return state


def _changed_values(section: str, current: Any, before: dict[str, str]) -> dict[str, Any]:
    """The keys whose JSON differs from the baseline's, with JSON copies of their values.

    Only those are checked, key and value: an unchanged value is what the store already
    holds, so it was checked when it was written. Anything else in the section (a key of
    any type, a value edited in place) is checked as the store would write it.
    """
    if not isinstance(current, dict):
        raise ContextValueError(section, current, "must be an object of keys to values")
    if len(current) > MAX_STATE_KEYS:
        raise ContextValueError(section, len(current), f"holds more than {MAX_STATE_KEYS} keys")
    sets: dict[str, Any] = {}
    for key, value in current.items():
        if isinstance(key, str) and key in before:
            try:
                if to_json(value) == before[key]:
                    continue
            except (TypeError, ValueError, RecursionError):
                pass  # checked_state_value below raises the error that names the field
        sets[key] = checked_state_value(section, key, value)
    return sets


def _section_changes(session: Session, changes: SessionChanges) -> None:
    base = session.baseline
    state = _state_of(session)
    for section in STATE_SECTIONS:
        current = getattr(state, section)
        before = base.sections[section] if base else {}
        sets = _changed_values(section, current, before)
        deletes = [k for k in before if k not in current]
        if sets:
            changes.set_keys[section] = sets
        if deletes:
            changes.deleted_keys[section] = deletes


def _new_queries(session: Session, base: Baseline | None) -> list[QueryRecord]:
    """The queries the store has not seen with this session, each checked field by field."""
    queries = _state_of(session).history.queries
    if not isinstance(queries, list):
        raise InvalidInputError("session.state.history.queries", queries, "must be a list")
    known = frozenset(base.query_ids) if base is not None else frozenset()
    new = []
    for query in queries:
        if not isinstance(query, QueryRecord):
            raise InvalidInputError("query", query, "must be a QueryRecord")
        query_id = getattr(query, "id", None)
        if not isinstance(query_id, UUID) or query_id not in known:
            check_query(query)  # raises for an id that is not a UUID
            new.append(query)
    return new


def _expiry_changes(
    session: Session, base: Baseline | None, changes: SessionChanges, now: datetime
) -> None:
    """A later expiry extends the session; one at or before ``now`` ends it now, as the
    original store did (it is how callers end a session early); any other is set as is."""
    expires_at = session.expires_at
    if not isinstance(expires_at, datetime) or expires_at.utcoffset() is None:
        raise InvalidInputError("expires_at", expires_at, "must be a timezone-aware datetime")
    if base is not None and expires_at > base.expires_at:
        changes.extend_by = expires_at - base.expires_at
    elif base is None or expires_at != base.expires_at:
        if expires_at <= now:
            changes.end_now = True
        else:
            changes.expires_at = expires_at


def _labels(session: Session) -> tuple[list[str], list[str]]:
    """The session's assets and tags as they are now (edited in place or not), each label
    checked and normalized; how many there may be is checked after the merge with
    concurrent writes (a stale copy may hold fewer or more than the merged result)."""
    return checked_labels("assets", session.assets), checked_labels("tags", session.tags)


def _adopt_labels(session: Session, assets: list[str], tags: list[str]) -> None:
    """After a write, the session holds its lists normalized as the store wrote them."""
    if assets != session.assets and 1 <= len(assets) <= MAX_ASSETS:
        session.assets = assets
    if tags != session.tags and len(tags) <= MAX_TAGS:
        session.tags = tags


def changes_since_read(
    session: Session, *, strict: bool, now: datetime | None = None
) -> SessionChanges:
    """What the caller changed on ``session`` since the store last handed it out, checked
    against the limits: raises InvalidInputError (or ContextValueError) naming the field.

    ``now`` is the time the write happens at (default: now), which decides whether a new
    expiry ends the session.
    """
    base = session.baseline
    changes = SessionChanges()
    changes.new_queries = _new_queries(session, base)
    _section_changes(session, changes)
    assets, tags = _labels(session)
    changes.assets = ListChange.between(base.assets if base else None, assets)
    changes.tags = ListChange.between(base.tags if base else None, tags)
    _expiry_changes(session, base, changes, utcnow() if now is None else now)
    if strict:
        changes.expected_version = check_count(
            "session.version", session.version, minimum=0, maximum=_MAX_VERSION
        )
    return changes


class SessionStore:
    """Create, read, update, list, extend, close, archive and clean up analysis sessions.

    ``SessionStore()`` with no arguments uses :class:`~fiml.core.config.Settings` from the
    environment; with nothing configured that is a SQLite file in the user's data
    directory. Call :meth:`initialize` (or use ``async with``) before anything else.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backend: SessionBackend | None = None,
        archive: SqlBackend | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._backend = backend
        self._archive = archive
        self._initialized = False

    async def __aenter__(self) -> SessionStore:
        await self.initialize()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.shutdown()

    @property
    def backend(self) -> SessionBackend:
        """The active tier."""
        if self._backend is None:
            raise RuntimeError("SessionStore.initialize() has not been called")
        return self._backend

    @property
    def archive(self) -> SqlBackend:
        """The archive tier (the same object as the active tier on SQL-only deployments)."""
        if self._archive is None:
            raise RuntimeError("SessionStore.initialize() has not been called")
        return self._archive

    @property
    def limits(self) -> WriteLimits:
        """The per-write limits from the settings."""
        return WriteLimits(
            max_queries=self.settings.session_max_queries_per_session,
            max_ttl=timedelta(hours=self.settings.session_max_ttl_hours),
        )

    async def initialize(self) -> None:
        """Connect to the configured backends; SQLite migrates its schema, PostgreSQL's must be
        at head (SchemaOutdatedError / SchemaNewerError otherwise, see ``fiml db upgrade``)."""
        if self._initialized:
            return
        if self._backend is None or self._archive is None:
            self._backend, self._archive = build_backends(self.settings)
        try:
            await self._archive.initialize()
            if self._backend is not self._archive:
                await self._backend.initialize()
        except BaseException:
            await self.shutdown()  # a tier that failed to start must not leak the other's pool
            raise
        self._initialized = True

    async def shutdown(self) -> None:
        """Close every connection; the store can be initialized again afterwards."""
        if self._backend is not None and self._backend is not self._archive:
            await self._backend.close()
        if self._archive is not None:
            await self._archive.close()
        self._initialized = False

    @property
    def _tiered(self) -> bool:
        return self._backend is not self._archive

    async def create_session(
        self,
        assets: Sequence[str],
        session_type: SessionType | str,
        user_id: str | None = None,
        ttl_hours: float | None = None,
        tags: Sequence[str] | None = None,
    ) -> Session:
        """Open a session on ``assets``; it expires ``ttl_hours`` from now (fractions allowed)."""
        kind = parse_session_type(session_type)
        ttl = self.settings.session_default_ttl_hours if ttl_hours is None else ttl_hours
        ttl = check_hours("ttl_hours", ttl, maximum=self.settings.session_max_ttl_hours)
        user = check_user_id(user_id)
        now = utcnow()
        session = Session(
            user_id=user,
            type=kind,
            assets=normalize_assets(list(assets) if isinstance(assets, tuple) else assets),
            tags=normalize_tags(list(tags) if isinstance(tags, tuple) else tags),
            created_at=now,
            last_accessed_at=now,
            expires_at=now + timedelta(hours=ttl),
        )
        await self.backend.insert(session)
        session.mark_baseline()
        return session

    async def get_session(
        self, session_id: UUID | str, *, history_limit: int | None = None
    ) -> Session | None:
        """A session, active or archived, or None if there is none.

        Loads the ``history_limit`` most recent queries (default: the
        ``session_recent_queries`` setting; :data:`ALL_QUERIES` for all). The history's
        counters always cover every query.
        """
        sid = parse_session_id(session_id)
        if history_limit is None:
            recent: int | None = self.settings.session_recent_queries
        else:
            recent = _history_limit(history_limit)
        session = await self.backend.load(sid, recent_queries=recent)
        if session is None and self._tiered:
            session = await self.archive.load(sid, recent_queries=recent)
        return session  # its baseline marked by the backend (models.session_from_store)

    async def get_history(
        self, session_id: UUID | str, *, offset: int = 0, limit: int = 50
    ) -> HistoryPage:
        """A page of a session's queries, oldest first; ``next_offset`` continues it."""
        sid = parse_session_id(session_id)
        limit = _page_limit(limit)
        offset = check_count("offset", offset, minimum=0, maximum=MAX_OFFSET)
        session = await self.get_session(sid, history_limit=0)
        if session is None:
            raise SessionNotFoundError(sid)
        source = self.archive if session.is_archived and self._tiered else self.backend
        queries = await source.load_history(sid, offset=offset, limit=limit)
        total = session.state.history.total_queries
        end = offset + len(queries)
        return HistoryPage(
            session_id=sid,
            queries=queries,
            offset=offset,
            total_queries=total,
            next_offset=end if end < total else None,
        )

    async def _apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime | None = None
    ) -> HistoryCounters:
        at = utcnow() if now is None else now
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
        now = utcnow()
        changes = changes_since_read(session, strict=strict, now=now)
        counters = await self._apply(sid, changes, now=now)
        _adopt_labels(session, *_labels(session))
        if changes.end_now:
            session.expires_at = now  # what the backend stored: the session ended now
        history = session.state.history
        history.total_queries = counters.total_queries
        history.cache_hits = counters.cache_hits
        session.version = counters.version
        session.mark_baseline()
        return session

    async def append_query(self, session_id: UUID | str, query: QueryRecord) -> HistoryCounters:
        """Track one query atomically; returns the history's counters after it.

        Idempotent by the query's id: sending a query that is already recorded changes
        no counter and reports ``added_queries == 0``, so a retried write counts once.
        """
        sid = parse_session_id(session_id)
        if not isinstance(query, QueryRecord):
            raise InvalidInputError("query", query, "must be a QueryRecord")
        check_query(query)
        changes = SessionChanges(new_queries=[query])
        return await self._apply(sid, changes)

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
        changes = SessionChanges()
        for section, values in (
            ("context", context),
            ("preferences", preferences),
            ("intermediate_results", intermediate_results),
        ):
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ContextValueError(section, values, "must be an object of keys to values")
            if len(values) > MAX_STATE_KEYS:
                raise ContextValueError(section, len(values), f"more than {MAX_STATE_KEYS} keys")
            changes.set_keys[section] = {
                key: checked_state_value(section, key, value) for key, value in values.items()
            }
        if not isinstance(remove_context, list | tuple):
            raise InvalidInputError("remove_context", remove_context, "must be a list of keys")
        removed = list(dict.fromkeys(check_state_key("remove_context", k) for k in remove_context))
        if len(removed) > MAX_STATE_KEYS:  # no section holds more
            raise ContextValueError(
                "remove_context", len(removed), f"more than {MAX_STATE_KEYS} keys"
            )
        if removed:
            changes.deleted_keys["context"] = removed
        if changes.is_empty():
            raise InvalidInputError("state", None, "nothing to update")
        return await self._apply(sid, changes)

    async def extend_session(self, session_id: UUID | str, hours: float) -> Session:
        """Push expiry ``hours`` later; the result may not exceed the maximum TTL from now."""
        sid = parse_session_id(session_id)
        hours = check_hours("hours", hours, maximum=self.settings.session_max_ttl_hours)
        await self._apply(sid, SessionChanges(extend_by=timedelta(hours=hours)))
        return await self._reload(sid)

    async def close_session(self, session_id: UUID | str) -> Session:
        """Mark a session finished by its user; it becomes read-only and is archived next."""
        sid = parse_session_id(session_id)
        await self._apply(sid, SessionChanges(close=True))
        return await self._reload(sid)

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
        """A page of a user's sessions, newest first; pass ``next_cursor`` for the next."""
        user = cast(str, check_user_id(user_id, optional=False))
        check_bool("include_archived", include_archived)
        limit = _page_limit(limit)
        position = _list_cursor(cursor)
        found = await self.backend.list_user(
            user, include_archived=include_archived, limit=limit + 1, cursor=position
        )
        if include_archived and self._tiered:
            archived = await self.archive.list_user(
                user, include_archived=True, limit=limit + 1, cursor=position
            )
            found = sorted(
                {s.id: s for s in [*found, *archived]}.values(),
                key=lambda s: (s.created_at, s.id),
                reverse=True,
            )
        page = found[:limit]
        more = len(found) > limit
        return SessionPage(
            sessions=page, next_cursor=ListCursor.after(page[-1]).encode() if more else None
        )

    @property
    def archiver(self) -> Archiver:
        """Moves finished sessions into the archive (see :mod:`fiml.sessions.archival`)."""
        return Archiver(
            self.backend, self.archive, record_facts=self.settings.session_enable_analytics
        )

    async def archive_session(self, session_id: UUID | str) -> bool:
        """Archive one session now, ending it if it is still running; False if it was
        archived already. If archiving fails, the session is left exactly as it was."""
        sid = parse_session_id(session_id)
        session = await self.get_session(sid, history_limit=0)
        if session is None:
            raise SessionNotFoundError(sid)
        if session.is_archived:
            return False
        return await self.archiver.archive_now(sid, now=utcnow())

    async def _archive_batch(self, ids: Sequence[UUID], *, now: datetime) -> CleanupReport:
        """Archive ``ids`` in concurrent chunks: while Redis or the database works on one
        chunk, this process encodes or decodes another. The chunks are disjoint, and each
        is archived crash-safely on its own; an active tier that fails is raised once all
        are done.
        """
        archiver = self.archiver
        if not archiver.tiered or len(ids) <= _ARCHIVE_CHUNK:
            return await archiver.archive_due(ids, now=now)
        results = await asyncio.gather(
            *(
                archiver.archive_due(ids[start : start + _ARCHIVE_CHUNK], now=now)
                for start in range(0, len(ids), _ARCHIVE_CHUNK)
            ),
            return_exceptions=True,
        )
        report = CleanupReport()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            report += result
        return report

    async def cleanup_expired_sessions(self, *, batch_size: int = 1000) -> CleanupReport:
        """Archive every session that has expired or was closed; says how many were
        archived, failed (the archive is unreachable: retried next run) and quarantined.

        Idempotent and safe to run concurrently: each session is archived, and counted,
        exactly once across all runs. Nothing is removed that is not in the archive.
        """
        batch_size = check_batch_size(batch_size)
        report = CleanupReport()
        while True:
            now = utcnow()
            left_behind = report.failed + report.quarantined
            ids = await self.backend.expired_ids(now=now, limit=batch_size, skip=left_behind)
            if not ids:
                break
            report += await self._archive_batch(ids, now=now)
            if report.failed or len(ids) < batch_size:
                break
        log = logger.info if report.ok else logger.warning
        log(
            "cleanup archived %d, failed %d, quarantined %d",
            report.archived,
            report.failed,
            report.quarantined,
            extra={
                "event": "cleanup.done",
                "archived": report.archived,
                "failed": report.failed,
                "quarantined": report.quarantined,
            },
        )
        return report

    async def list_quarantined(
        self, *, limit: int = 100, user_id: str | None = None
    ) -> list[QuarantinedSession]:
        """Sessions archival could not move, longest-failing first (for an operator)."""
        limit = _page_limit(limit)
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise InvalidInputError("user_id", user_id, "must be a non-empty string")
        return await self.archive.list_quarantined(limit=limit, user_id=user_id)

    async def delete_old_archived_sessions(self, *, retention_days: float | None = None) -> int:
        """Delete archives older than the retention period; returns how many."""
        days = self.settings.session_retention_days if retention_days is None else retention_days
        days = check_number("retention_days", days, minimum=0, maximum=MAX_RETENTION_DAYS)
        return await self.archive.delete_archived_before(utcnow() - timedelta(days=days))


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
