"""Finding a user's sessions in SQL (:mod:`fiml.sessions.search` has the criteria).

Assets and tags are rows of ``session_search_terms`` (:class:`~fiml.sessions.db.
SessionSearchTerm`), written by the same transaction as the session (on PostgreSQL's
conditional write, the same statement: :func:`indexed_write`): a search by one is a
range scan of its ``(user, kind, term, created, id)`` index, newest first, so it reads
about as many rows as it returns, whatever the number of sessions stored. Words are found
by each database's full-text index, which migration 0005 creates and which the database
keeps itself: on PostgreSQL ``tsvector`` columns (``sessions.context_search``, set by a
trigger when the context changes, and the generated ``session_queries.summary_search``)
under GIN indexes; on SQLite an FTS5 table kept by triggers. Both parse with their plain
configuration ('simple', 'unicode61'): words of letters and digits, without case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    CTE,
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    Table,
    and_,
    bindparam,
    column,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    union,
    union_all,
)
from sqlalchemy.types import Uuid

from fiml.sessions.backends.base import ListCursor
from fiml.sessions.backends.fields import SUMMARY_FIELDS
from fiml.sessions.backends.sql_rows import S, selected
from fiml.sessions.db import SessionSearchTerm
from fiml.sessions.models import QueryRecord, Session
from fiml.sessions.search import SessionSearch, query_asset
from fiml.sessions.sql_dialects import dialect_insert

__all__ = ["WrittenTerms", "index_session", "index_write", "indexed_write", "search_statement"]

T = cast(Table, SessionSearchTerm.__table__)
_LISTING_COLUMNS = selected(SUMMARY_FIELDS)

# What migration 0005 adds outside the ORM schema (read by searches only, never written).
_full_text = MetaData()
# The tsvector columns are only compared with ``@@``, so they need no type: a typed column
# would import SQLAlchemy's PostgreSQL dialect, which SQLite processes never load.
_CONTEXT_TEXT = table("sessions", column("id"), column("context_search"))
_SUMMARY_TEXT = table("session_queries", column("session_id"), column("summary_search"))
_DOCS = Table(
    "session_search_docs",
    _full_text,
    Column("doc_id", Integer),
    Column("session_id", Uuid),
    Column("part", Integer),
)
_FTS = table("session_search_fts", column("rowid"))


def _term_rows(
    session_id: UUID, user_id: str | None, created_at: datetime, kind: str, terms: Iterable[str]
) -> list[dict[str, Any]]:
    return [
        {
            "session_id": session_id,
            "kind": kind,
            "term": term,
            "user_id": user_id,
            "created_at": created_at,
        }
        for term in dict.fromkeys(terms)
    ]


def _insert_terms(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(dialect_insert(conn.dialect.name, T).on_conflict_do_nothing(), rows)


def _query_assets(queries: Iterable[QueryRecord]) -> list[str]:
    return [asset for asset in map(query_asset, queries) if asset is not None]


def index_session(conn: Connection, session: Session) -> None:
    """The terms of a session just inserted (active, or copied into the archive)."""
    sid, user, created = session.id, session.user_id, session.created_at
    assets = [*session.assets, *_query_assets(session.state.history.queries)]
    rows = _term_rows(sid, user, created, "asset", assets)
    rows += _term_rows(sid, user, created, "tag", session.tags)
    _insert_terms(conn, rows)


def _written_terms(
    session_id: UUID, stored: dict[str, Any], values: dict[str, Any], queries: Sequence[QueryRecord]
) -> tuple[list[dict[str, Any]], list[str] | None]:
    """The term rows a write adds and, if it sets the tags, the tags it sets."""
    user, created = stored["user_id"], stored["created_at"]
    indexed = set(stored.get("assets") or ())
    brought = [*values.get("assets", ()), *_query_assets(queries)]
    rows = _term_rows(session_id, user, created, "asset", [a for a in brought if a not in indexed])
    if "tags" not in values:
        return rows, None
    tags = list(dict.fromkeys(values["tags"]))
    return rows + _term_rows(session_id, user, created, "tag", tags), tags


def index_write(
    conn: Connection,
    session_id: UUID,
    stored: dict[str, Any],
    values: dict[str, Any],
    queries: Sequence[QueryRecord],
) -> None:
    """The terms a write changes: assets it adds (the asset index only grows), the
    symbols of its new queries, and the tags, set whole when the write changes them.

    The assets stored before the write are indexed already: a query on one of them, the
    usual case, costs no statement here."""
    rows, tags = _written_terms(session_id, stored, values, queries)
    if tags is not None:
        conn.execute(delete(T).where(T.c.session_id == session_id, T.c.kind == "tag"))
    _insert_terms(conn, rows)


@dataclass(frozen=True, slots=True)
class WrittenTerms:
    """The search terms a write changes, for :func:`indexed_write`'s statement."""

    rows: list[dict[str, Any]]
    tags: list[str] | None
    """The tags it sets, if it sets them."""

    @classmethod
    def of(
        cls,
        session_id: UUID,
        stored: dict[str, Any],
        values: dict[str, Any],
        queries: Sequence[QueryRecord],
    ) -> WrittenTerms:
        """What :func:`index_write` would write for the same write."""
        return cls(*_written_terms(session_id, stored, values, queries))

    @property
    def shape(self) -> tuple[int, bool]:
        """What :func:`indexed_write` is built for: the rows inserted, whether tags are set."""
        return len(self.rows), self.tags is not None

    def values(self) -> dict[str, Any]:
        """The parameters of :func:`indexed_write`'s CTEs."""
        values: dict[str, Any] = {}
        if self.tags is not None:
            values["kept_tags"] = self.tags
        for n, row in enumerate(self.rows):
            values.update({f"t{n}_{name}": row[name] for name in _TERM_FIELDS})
        return values


_TERM_FIELDS = ("kind", "term", "user_id", "created_at")


def indexed_write(bumped: CTE, rows: int, sets_tags: bool) -> list[CTE]:
    """PostgreSQL: :func:`index_write`'s changes (``rows`` terms inserted, the tags set
    if ``sets_tags``; parameters :meth:`WrittenTerms.values`) as data-modifying CTEs that
    change nothing unless ``bumped`` (the conditional update of the session's row)
    returned it.

    The tags no longer set are deleted and the new terms inserted, rows disjoint: a
    statement's CTEs run in no given order and none sees another's changes, so deleting
    every tag and inserting the new ones, as :func:`index_write` does, could delete a tag
    kept (its insert, finding it stored, skipped)."""
    ctes = []
    if sets_tags:
        kept = bindparam("kept_tags", type_=T.c.term.type, expanding=True)
        dropped = delete(T).where(T.c.session_id == bumped.c.id, T.c.kind == "tag")
        ctes.append(dropped.where(T.c.term.not_in(kept)).cte("dropped_tags"))
    if rows:
        selects = [
            select(
                bumped.c.id,
                *(bindparam(f"t{n}_{name}", type_=T.c[name].type) for name in _TERM_FIELDS),
            )
            for n in range(rows)
        ]
        source = selects[0] if rows == 1 else union_all(*selects)
        fields = ["session_id", *_TERM_FIELDS]
        added = dialect_insert("postgresql", T).from_select(fields, source)
        ctes.append(added.on_conflict_do_nothing().cte("new_terms"))
    return ctes


_OTHER_TERMS = T.alias("other_terms")  # beside the term a search walks, when it walks one


def _has_term(kind: str, term: str) -> Any:
    other = _OTHER_TERMS
    return exists().where(other.c.session_id == S.c.id, other.c.kind == kind, other.c.term == term)


def _matching_words(dialect: str, words: Sequence[str]) -> Any:
    """The ids of the sessions whose context, or one of whose result summaries, holds
    every word, from the full-text index."""
    if dialect == "postgresql":
        wanted = func.plainto_tsquery("simple", " ".join(words))
        return union(
            select(_CONTEXT_TEXT.c.id).where(_CONTEXT_TEXT.c.context_search.op("@@")(wanted)),
            select(_SUMMARY_TEXT.c.session_id).where(
                _SUMMARY_TEXT.c.summary_search.op("@@")(wanted)
            ),
        )
    phrase = " ".join(f'"{word}"' for word in words)  # words are letters and digits only
    found = select(_FTS.c.rowid).where(literal_column("session_search_fts").op("MATCH")(phrase))
    return select(_DOCS.c.session_id).where(_DOCS.c.doc_id.in_(found))


def search_statement(
    dialect: str, user_id: str, search: SessionSearch, *, limit: int, cursor: ListCursor | None
) -> Select[Any]:
    """The listing columns of up to ``limit`` matching sessions, newest first.

    Searching by asset or tag walks that term's index rows of the user, newest first; any
    other criterion is checked on each row met, so a search costs about the rows it
    returns when its asset or tag is selective.
    """
    stmt = select(*_LISTING_COLUMNS)
    driver = ("asset", search.asset) if search.asset is not None else None
    if driver is None and search.tag is not None:
        driver = ("tag", search.tag)
    if driver is not None:
        kind, term = driver
        created, sid = T.c.created_at, T.c.session_id
        stmt = stmt.select_from(T.join(S, S.c.id == T.c.session_id)).where(
            T.c.user_id == user_id, T.c.kind == kind, T.c.term == term
        )
    else:
        created, sid = S.c.created_at, S.c.id
        stmt = stmt.where(S.c.user_id == user_id)
    if search.tag is not None and driver != ("tag", search.tag):
        stmt = stmt.where(_has_term("tag", search.tag))
    if search.session_type is not None:
        stmt = stmt.where(S.c.session_type == search.session_type)
    if not search.include_archived:
        stmt = stmt.where(S.c.archived_at.is_(None))
    if search.since is not None:
        stmt = stmt.where(created >= search.since)
    if search.until is not None:
        stmt = stmt.where(created < search.until)
    if search.words:
        stmt = stmt.where(S.c.id.in_(_matching_words(dialect, search.words)))
    if cursor is not None:
        stmt = stmt.where(
            or_(
                created < cursor.created_at,
                and_(created == cursor.created_at, sid < cursor.session_id),
            )
        )
    return stmt.order_by(created.desc(), sid.desc()).limit(limit)
