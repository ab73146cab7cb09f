"""SQL backend on SQLAlchemy 2: SQLite (the standard library's ``sqlite3`` in a database
thread) and PostgreSQL (asyncpg).

Each operation's SQL is one synchronous function of a connection, run whole in one hop
(see :class:`~fiml.sessions.backends.sql_archive.SqlArchive`), through SQLAlchemy Core. Every
write is one transaction whose decision, by
:func:`~fiml.sessions.backends.rules.plan_write`, holds for the row as it is when the write
commits, so concurrent writers in any number of processes never overwrite each other: on
SQLite the transaction holds the file's write lock from its start (``BEGIN IMMEDIATE``); on
PostgreSQL a write of one query at most is decided on an unlocked read and applied by one
statement only at the version read, and any other write, or one that lost that race, locks
the row first (``SELECT ... FOR UPDATE``). Queries are rows of
their own: tracking one is the row lock, an insert that skips a query already recorded
(``ON CONFLICT DO NOTHING ... RETURNING``, so the duplicate check is no statement of its
own) and an update of the session's counters, whatever the history's length. Database
faults are storage errors naming the dialect
(:func:`~fiml.sessions.backends.sql_faults.unavailable_as_error`). The archive side of the
database (:class:`~fiml.sessions.backends.sql_archive.SqlArchive`) is what this class is
built on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError

from fiml.core.errors import CorruptRecordError, SessionNotFoundError
from fiml.sessions.backends.base import (
    ExportedSessions,
    HistoryCounters,
    ListCursor,
    SessionChanges,
    WriteLimits,
)
from fiml.sessions.backends.fields import SUMMARY_FIELDS, values_of
from fiml.sessions.backends.rules import PlannedWrite, StoredSession, plan_write
from fiml.sessions.backends.sql_archive import ArchivedInPlace, SqlArchive, moved_by_archival
from fiml.sessions.backends.sql_by_id import (
    RECORDED,
    drop_placed,
    locked_row,
    query_range,
    row_to_plan,
    session_row,
    update_session,
)
from fiml.sessions.backends.sql_events import (
    append_events,
    appended_event_values,
    appended_events,
    copy_events,
    delete_events,
    read_events,
    write_events,
)
from fiml.sessions.backends.sql_faults import unavailable_as_error
from fiml.sessions.backends.sql_metrics import SqlMetrics
from fiml.sessions.backends.sql_partitions import (
    ARCHIVE_MONTH,
    QUERY_CONFLICT_COLUMNS,
    in_active_partition,
    is_partitioned,
    sessions_table,
)
from fiml.sessions.backends.sql_rows import Q, S, decoded, query_values, selected, session_from_row
from fiml.sessions.backends.sql_search import T as TERMS
from fiml.sessions.backends.sql_search import (
    WrittenTerms,
    index_session,
    index_write,
    indexed_write,
    search_statement,
)
from fiml.sessions.backends.sql_sharing import SqlSharing
from fiml.sessions.backends.summaries import skip_corrupt, summaries_from_values
from fiml.sessions.events import NewEvent, SessionEvent
from fiml.sessions.models import (
    STATE_SECTIONS,
    QueryRecord,
    Session,
    SessionSummary,
    queries_from_json,
    queries_from_rows,
    utcnow,
)
from fiml.sessions.quarantine import UNDECODABLE, failure_reason, release
from fiml.sessions.search import SessionSearch
from fiml.sessions.sql_dialects import dialect_insert

__all__ = ["ArchivedInPlace", "SqlBackend", "unavailable_as_error"]

_LISTING_COLUMNS = selected(SUMMARY_FIELDS)

# The hot statements are built once with bound parameters (here and in sql_by_id):
# SQLAlchemy then finds each one's compiled form in its cache by a key computed from the
# same object every time.


def _query_document() -> ColumnElement[Any]:
    """SQLite: a query row as the JSON text of its ``QueryRecord``, built by SQLite, so
    that a read's queries are validated from one JSON array in one pydantic call instead
    of row objects whose every value SQLAlchemy processes first.

    Times are stored naive in UTC (``YYYY-MM-DD HH:MM:SS.ffffff``) and read as UTC; a REAL
    is printed with 17 significant digits (``json_object`` itself prints 15, which would
    not give every double back); damaged parameters become a JSON string, which the model
    refuses, as it refuses them on the other dialects."""
    duration = Q.c.execution_time_ms
    return func.json_object(
        "id",
        Q.c.id,
        "timestamp",
        func.replace(type_coerce(Q.c.timestamp, String), " ", "T") + "Z",
        "query_type",
        Q.c.query_type,
        "parameters",
        case(
            (func.json_valid(Q.c.parameters), func.json(Q.c.parameters)),
            else_=type_coerce(Q.c.parameters, String),
        ),
        "result_summary",
        Q.c.result_summary,
        "execution_time_ms",
        case((duration.is_(None), None), else_=func.json(func.printf("%!.17g", duration))),
        "cache_hit",
        type_coerce(Q.c.cache_hit, Integer),
        type_=String,
    )


_QUERY_DOCUMENTS = (
    select(_query_document())
    .where(
        Q.c.session_id == bindparam("sid"),
        Q.c.seq > bindparam("after"),
        Q.c.seq <= bindparam("last"),
    )
    .order_by(Q.c.seq)
)
"""SQLite: the queries of :func:`~fiml.sessions.backends.sql_by_id.query_range`, each as
its JSON text."""
_INSERT_SESSION = insert(S)
_INSERT_QUERIES = insert(Q)


_RULE_COLUMNS = frozenset(
    {
        "version",
        "expires_at",
        "last_accessed_at",
        "closed_at",
        "archived_at",
        "total_queries",
        "cache_hits",
        "query_type_counts",
        "first_query_at",
        "last_query_at",
    }
)
"""What :func:`plan_write` reads of every write's session (``StoredSession``)."""
_INDEX_COLUMNS = frozenset({"user_id", "created_at"})
"""What :func:`~fiml.sessions.backends.sql_search.index_write` reads of every write's
session: its index rows carry the user and the creation time."""


def _columns_read(changes: SessionChanges) -> frozenset[str]:
    """The columns a write reads: the rules' own, and the lists and state sections it
    changes (decoding the JSON of the others would be wasted)."""
    names = set(_RULE_COLUMNS | _INDEX_COLUMNS)
    names.update(name for name in ("assets", "tags") if getattr(changes, name) is not None)
    if changes.new_queries:
        names.add("assets")  # a query on a stored asset is indexed already (index_write)
    names.update(
        section
        for section in STATE_SECTIONS
        if changes.set_keys.get(section) or changes.deleted_keys.get(section)
    )
    return frozenset(names)


@functools.cache
def _insert_new_queries(dialect: str) -> Any:
    """Inserts a write's queries, skipping those the session recorded already (same id),
    and returns the ids it inserted: the duplicate check and the insert in one statement.
    PostgreSQL's unique key of a query includes the archive's partition key."""
    conflict = QUERY_CONFLICT_COLUMNS if dialect == "postgresql" else ("session_id", "id")
    ins = dialect_insert(dialect, Q).on_conflict_do_nothing(index_elements=conflict)
    return ins.returning(Q.c.id)


def _insert(conn: Connection, session: Session, events: Sequence[SessionEvent]) -> None:
    conn.execute(_INSERT_SESSION, [values_of(session)])
    copy_events(conn, {session.id: events})
    queries = session.state.history.queries
    if queries:
        start = session.state.history.total_queries - len(queries) + 1
        rows = [query_values(session.id, start + i, q) for i, q in enumerate(queries)]
        conn.execute(_INSERT_QUERIES, rows)
    index_session(conn, session)


def _load(
    conn: Connection,
    session_id: UUID,
    recent_queries: int | None,
    owner: str | None,
    holds_active: bool,
) -> Session | None:
    """The session, on PostgreSQL looked for in the active partition first, then among
    the months; without ``holds_active`` (the archive of Redis) in every partition at once,
    one statement (see :mod:`~fiml.sessions.backends.sql_by_id`)."""
    partitioned = is_partitioned(conn)
    params = {"sid": session_id} if owner is None else {"sid": session_id, "owner": owner}
    owned = owner is not None
    if partitioned and not holds_active:
        row = conn.execute(session_row(False, owned), params).mappings().first()
        where = "any"
    else:
        row = conn.execute(session_row(partitioned, owned), params).mappings().first()
        where = "active"
    if row is None and partitioned and holds_active:  # not active: archived, or unknown
        row = conn.execute(session_row(True, owned, archived=True), params).mappings().first()
        where = "month"
    if row is None:
        return None
    if recent_queries is None or recent_queries > 0:
        # Bounded by the counters read with the row: the queries agree with them without
        # a snapshot shared by the two statements (queries are only ever appended).
        total = row["total_queries"]
        after = 0 if recent_queries is None else total - recent_queries
        page = {"sid": session_id, "after": after, "last": total}
        if where == "month":
            page["month"] = row[ARCHIVE_MONTH]
        return session_from_row(row, _queries(conn, page, where))
    return session_from_row(row, [])


def _queries(conn: Connection, page: dict[str, Any], where: str) -> list[QueryRecord]:
    """The queries of ``page`` (:func:`~fiml.sessions.backends.sql_by_id.query_range`'s
    parameters), oldest first; on PostgreSQL in the partition ``where`` says."""
    if conn.dialect.name == "sqlite":
        return queries_from_json(conn.execute(_QUERY_DOCUMENTS, page).scalars().all())
    return queries_from_rows(conn.execute(query_range(where), page).all())


def _history(conn: Connection, page: dict[str, Any], holds_active: bool) -> list[QueryRecord]:
    """The queries of ``page``: on PostgreSQL those in the active partition, else (none
    there: an archived session's, or a page past the end) wherever they are; without
    ``holds_active`` wherever they are at once."""
    if is_partitioned(conn) and not holds_active:
        return _queries(conn, page, "any")
    queries = _queries(conn, page, "active")
    if not queries and is_partitioned(conn):
        queries = _queries(conn, page, "any")
    return queries


def _apply(
    conn: Connection,
    session_id: UUID,
    changes: SessionChanges,
    now: datetime,
    limits: WriteLimits,
) -> HistoryCounters:
    """One write, under the session's row lock (``SELECT ... FOR UPDATE``; on SQLite the
    transaction's ``BEGIN IMMEDIATE``), as :func:`plan_write` decides.

    The write's queries are inserted before the rules run, by an insert that skips those
    already recorded and says which it inserted: the rules learn what is recorded from it
    without a query of their own. A refusal raises, and the transaction takes the insert
    back with everything else.
    """
    partitioned = is_partitioned(conn)
    names, params = _columns_read(changes), {"sid": session_id}
    row = conn.execute(locked_row(names, partitioned), params).mappings().first()
    if row is None and partitioned:  # archived (the rules refuse it), or no such session
        row = conn.execute(locked_row(names, True, archived=True), params).mappings().first()
    if row is None:
        raise SessionNotFoundError(session_id)
    stored_values = dict(row)  # a dict: the rules also ask for the sections not read
    total = stored_values["total_queries"]
    candidates: dict[UUID, QueryRecord] = {}
    for query in changes.new_queries:
        candidates.setdefault(query.id, query)  # the first of each id, as the rules keep
    recorded: set[UUID] = set()
    if candidates:
        placed = enumerate(candidates.values(), total + 1)
        rows = [query_values(session_id, n, q) for n, q in placed]
        inserted = set(conn.execute(_insert_new_queries(conn.dialect.name), rows).scalars())
        recorded = candidates.keys() - inserted
    stored = StoredSession.of(stored_values, recorded_query_ids=recorded)
    write = plan_write(session_id, stored, changes, now=now, limits=limits)
    if recorded and write.new_queries:
        # Some were recorded already: the others were placed after gaps; renumber them.
        conn.execute(drop_placed(partitioned), {"sid": session_id, "after": total})
        rows = [query_values(session_id, n, q) for n, q in enumerate(write.new_queries, total + 1)]
        conn.execute(_INSERT_QUERIES, rows)
    conn.execute(update_session(partitioned), {"sid_": session_id, **write.values})
    index_write(conn, session_id, stored_values, write.values, write.new_queries)
    append_events(conn, session_id, write_events(changes, write.new_queries, now=now))
    return write.counters


@dataclass(frozen=True, slots=True)
class _Planned:
    """A write decided on an unlocked read: what it sets, on the version it read, the
    columns read (the search index's terms follow them) and its timeline events."""

    read_version: int
    write: PlannedWrite
    stored_values: dict[str, Any]
    events: list[NewEvent]


def _plan_unlocked(
    conn: Connection,
    session_id: UUID,
    changes: SessionChanges,
    now: datetime,
    limits: WriteLimits,
) -> _Planned:
    """PostgreSQL: the write of ``changes`` (one new query at most) as :func:`plan_write`
    decides it on the row read without a lock, in one statement with whether the query
    is recorded already. A refusal raises: it is true of the version read."""
    query = changes.new_queries[0] if changes.new_queries else None
    params: dict[str, Any] = {"sid": session_id}
    if query is not None:
        params["qid"] = query.id
    names, with_query = _columns_read(changes), query is not None
    row = conn.execute(row_to_plan(names, with_query, True), params).mappings().first()
    if row is None:  # archived (the rules refuse it), or no such session
        stmt = row_to_plan(names, with_query, True, archived=True)
        row = conn.execute(stmt, params).mappings().first()
    if row is None:
        raise SessionNotFoundError(session_id)
    values = dict(row)
    recorded = {query.id} if query is not None and values.pop(RECORDED) else set()
    stored = StoredSession.of(values, recorded_query_ids=recorded)
    write = plan_write(session_id, stored, changes, now=now, limits=limits)
    events = write_events(changes, write.new_queries, now=now)
    return _Planned(stored.version, write, values, events)


def _write_if_unchanged(conn: Connection, session_id: UUID, planned: _Planned) -> bool:
    """PostgreSQL: the planned write as one statement (:func:`_conditional_write`), in
    autocommit mode, which changes nothing unless the session is still at the version
    read (any write bumps it); whether it did."""
    write = planned.write
    terms = WrittenTerms.of(session_id, planned.stored_values, write.values, write.new_queries)
    columns = tuple(sorted(write.values))
    stmt = _conditional_write(columns, bool(write.new_queries), len(planned.events), terms.shape)
    params = {"sid": session_id, "read_version": planned.read_version}
    params.update({f"set_{name}": value for name, value in write.values.items()})
    for query in write.new_queries:
        row = query_values(session_id, write.counters.total_queries, query)
        params.update({f"q_{name}": row[name] for name in _QUERY_FIELDS})
    params.update(appended_event_values(planned.events))
    params.update(terms.values())
    return conn.execute(stmt, params).first() is not None


_QUERY_FIELDS = tuple(c.name for c in Q.c if c.name != "session_id")


@functools.lru_cache(maxsize=256)
def _conditional_write(
    columns: tuple[str, ...], with_query: bool, events: int, terms: tuple[int, bool]
) -> Any:
    """PostgreSQL: the statement of :func:`_write_if_unchanged` for one shape of write (the
    columns it sets, whether it adds a query, how many events, :attr:`WrittenTerms.shape`),
    built once with bound parameters.

    The row's update is a data-modifying CTE (``bumped``), and every other row the write
    adds or removes (its query, its timeline events, its search terms) is a further CTE
    that selects from what ``bumped`` returned: all or nothing, as one statement is, in
    one round trip. It updates the active session only (the partition named: see
    :mod:`~fiml.sessions.backends.sql_by_id`); an archived one is no longer there.
    """
    sessions = sessions_table
    bump = (
        update(sessions)
        .where(
            sessions.c.id == bindparam("sid", type_=S.c.id.type),
            sessions.c.version == bindparam("read_version"),
            in_active_partition(sessions),
        )
        .values({name: bindparam(f"set_{name}", type_=S.c[name].type) for name in columns})
        .returning(sessions.c.id)
    )
    bumped = bump.cte("bumped")
    beside = []
    if with_query:
        fields = [bindparam(f"q_{name}", type_=Q.c[name].type) for name in _QUERY_FIELDS]
        added = insert(Q).from_select(["session_id", *_QUERY_FIELDS], select(bumped.c.id, *fields))
        beside.append(added.cte("new_query"))
    if events:
        beside.append(appended_events(bumped, events))
    beside += indexed_write(bumped, *terms)
    return select(bumped.c.id).add_cte(*beside) if beside else bump


def _delete(conn: Connection, session_id: UUID) -> bool:
    conn.execute(delete(Q).where(Q.c.session_id == session_id))
    delete_events(conn, [session_id])
    # No foreign key cascades on the partitioned PostgreSQL archive: the terms go here.
    conn.execute(delete(TERMS).where(TERMS.c.session_id == session_id))
    result = conn.execute(delete(S).where(S.c.id == session_id))
    release(conn, [session_id])  # an operator's delete ends a quarantine
    return bool(result.rowcount)


class SqlBackend(SqlArchive, SqlMetrics, SqlSharing):
    """Sessions in a SQL database; also the archive of every deployment (its archive side is
    :class:`~fiml.sessions.backends.sql_archive.SqlArchive`, its analytics methods
    :class:`~fiml.sessions.backends.sql_metrics.SqlMetrics`, its grants and templates
    :class:`~fiml.sessions.backends.sql_sharing.SqlSharing`).

    Each method's SQL runs whole in one place (see :class:`SqlArchive`): one hop to the
    database thread and back on SQLite, one ``run_sync`` on PostgreSQL.
    """

    async def insert(self, session: Session, events: Sequence[SessionEvent] = ()) -> None:
        """Store a new session, any queries it already holds, and its first events."""
        await self._writing(lambda conn: _insert(conn, session, events))

    async def load(
        self, session_id: UUID, *, recent_queries: int | None, owner: str | None = None
    ) -> Session | None:
        """A session with its latest ``recent_queries`` queries (None: the whole history),
        with an ``owner`` only if it is theirs; a row that does not decode is a
        CorruptRecordError naming the session."""
        try:
            return await self._reading(
                lambda conn: _load(conn, session_id, recent_queries, owner, self.holds_active)
            )
        except UNDECODABLE as exc:
            raise CorruptRecordError(self.name, session_id, failure_reason(exc)) from None

    async def load_history(self, session_id: UUID, *, offset: int, limit: int) -> list[QueryRecord]:
        """Queries ``offset+1 .. offset+limit``, oldest first."""
        page = {"sid": session_id, "after": offset, "last": offset + limit}

        def read(conn: Connection) -> list[QueryRecord]:
            return _history(conn, page, self.holds_active)

        try:
            return await self._reading(read)
        except UNDECODABLE as exc:
            raise CorruptRecordError(self.name, session_id, failure_reason(exc)) from None

    async def load_events(self, session_id: UUID, *, after: int, limit: int) -> list[SessionEvent]:
        """Events ``after+1 ..`` of a session's timeline, at most ``limit``."""
        return await self._reading(
            lambda conn: read_events(conn, session_id, after=after, limit=limit)
        )

    async def apply(
        self, session_id: UUID, changes: SessionChanges, *, now: datetime, limits: WriteLimits
    ) -> HistoryCounters:
        """Apply one write atomically, as the rules decide.

        On PostgreSQL a write of one query at most is first tried in two round trips,
        without a lock, on one connection in autocommit mode: the row read (the rules
        decide on it), then one statement that applies the decision, with its query,
        timeline events and search terms, only if the session's version is still the one
        read. If another write came in between, the write runs again under the row lock.
        SQLite holds its file's write lock from the start (``BEGIN IMMEDIATE``): no race
        to lose.
        """
        if self._write_lock is None and len(changes.new_queries) <= 1:
            try:
                planned, written = await self._read_then_write_once(
                    lambda conn: _plan_unlocked(conn, session_id, changes, now, limits),
                    lambda conn, planned: _write_if_unchanged(conn, session_id, planned),
                )
            except DBAPIError as exc:
                # Archived between the read and the write (its row moved to its month's
                # partition): the write took no effect; the locked write finds it archived.
                if not moved_by_archival(exc):
                    raise
            else:
                if written:
                    return planned.write.counters
        return await self._writing(lambda conn: _apply(conn, session_id, changes, now, limits))

    async def delete(self, session_id: UUID) -> bool:
        """Delete a session and its queries."""
        return await self._writing(lambda conn: _delete(conn, session_id))

    async def list_user(
        self,
        user_id: str,
        *,
        include_archived: bool,
        limit: int,
        cursor: ListCursor | None,
    ) -> list[SessionSummary]:
        """A page of a user's sessions, newest first, through the (user, created) index."""
        stmt = select(*_LISTING_COLUMNS).where(S.c.user_id == user_id)
        if not include_archived:
            stmt = stmt.where(S.c.archived_at.is_(None))
        if cursor is not None:
            stmt = stmt.where(
                or_(
                    S.c.created_at < cursor.created_at,
                    and_(S.c.created_at == cursor.created_at, S.c.id < cursor.session_id),
                )
            )
        stmt = stmt.order_by(S.c.created_at.desc(), S.c.id.desc()).limit(limit)
        return await self._summaries(stmt)

    async def search_user(
        self, user_id: str, search: SessionSearch, *, limit: int, cursor: ListCursor | None
    ) -> list[SessionSummary]:
        """Up to ``limit`` of a user's sessions matching ``search``, newest first, after
        ``cursor``, through the search indexes (:mod:`~fiml.sessions.backends.sql_search`)."""
        dialect = self.engine.dialect.name
        return await self._summaries(
            search_statement(dialect, user_id, search, limit=limit, cursor=cursor)
        )

    async def _summaries(self, stmt: Select[Any]) -> list[SessionSummary]:
        """The listing entries a statement selects, leaving out (and logging) damaged rows."""
        rows = await self._reading(lambda conn: conn.execute(stmt).mappings().all())
        entries = []
        for row in rows:
            try:
                entries.append(decoded(row, SUMMARY_FIELDS))
            except UNDECODABLE as exc:
                skip_corrupt(row["id"], exc)
        return summaries_from_values(entries, utcnow())

    async def expired_ids(self, *, now: datetime, limit: int, skip: int = 0) -> list[UUID]:
        """Unarchived sessions past expiry, through the partial expiry index."""
        stmt = (
            select(S.c.id)
            .where(S.c.archived_at.is_(None), S.c.expires_at <= now)
            .order_by(S.c.expires_at, S.c.id)
            .offset(skip)
            .limit(limit)
        )
        return await self._reading(lambda conn: list(conn.execute(stmt).scalars()))

    async def count_active(
        self,
        *,
        now: datetime,
        user_id: str | None = None,
        session_type: str | None = None,
        created_since: datetime | None = None,
    ) -> int:
        """Running sessions matching the filters, counted on the partial expiry index."""
        conditions = [S.c.archived_at.is_(None), S.c.closed_at.is_(None), S.c.expires_at > now]
        if user_id is not None:
            conditions.append(S.c.user_id == user_id)
        if session_type is not None:
            conditions.append(S.c.session_type == session_type)
        if created_since is not None:
            conditions.append(S.c.created_at >= created_since)
        stmt = select(func.count()).select_from(S).where(*conditions)
        return await self._reading(lambda conn: int(conn.execute(stmt).scalar_one()))

    async def export_sessions(self, session_ids: Sequence[UUID]) -> ExportedSessions:
        """Sessions with their whole histories (SQL has no freeze: it archives in place)."""
        export = ExportedSessions()
        for session_id in session_ids:
            try:
                session = await self.load(session_id, recent_queries=None)
            except CorruptRecordError as exc:
                export.unreadable[session_id] = exc.reason
                continue
            if session is not None:
                export.sessions.append(session)
                export.events[session_id] = await self.load_events(
                    session_id, after=0, limit=2**31 - 1
                )
        return export

    async def thaw(self, session_ids: Sequence[UUID]) -> None:
        """Nothing to do: SQL exports freeze nothing."""

    async def remove_archived(self, session_ids: Sequence[UUID]) -> int:
        """Delete sessions by id (used when another backend holds the archive)."""
        removed = 0
        for session_id in session_ids:
            removed += await self.delete(session_id)
        return removed
