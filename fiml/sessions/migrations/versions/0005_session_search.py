"""Session search: asset and tag terms, and a full-text index of contexts and summaries.

PostgreSQL: ``sessions.context_search`` (a tsvector of the context's string values, set by
a trigger whenever the context is written) and ``session_queries.summary_search`` (a
generated tsvector of the result summary), each under a GIN index. SQLite: an FTS5 table
of the same texts, one document per context and per query, kept by triggers; its rowids
are ``session_search_docs.doc_id``, an INTEGER PRIMARY KEY, which VACUUM never renumbers.
Existing sessions are indexed by the upgrade.

Revision ID: 0005
Revises: 0006
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import fiml.sessions.db

revision: str = "0005"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_UPGRADE = [
    "ALTER TABLE sessions ADD COLUMN context_search tsvector",
    """CREATE OR REPLACE FUNCTION fiml_session_context_search() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      NEW.context_search := jsonb_to_tsvector('simple', NEW.context, '["string"]');
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER sessions_context_search BEFORE INSERT OR UPDATE OF context ON sessions
    FOR EACH ROW EXECUTE FUNCTION fiml_session_context_search()""",
    "UPDATE sessions SET context_search = jsonb_to_tsvector('simple', context, '[\"string\"]')",
    "CREATE INDEX ix_sessions_context_search ON sessions USING gin (context_search)",
    """ALTER TABLE session_queries ADD COLUMN summary_search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(result_summary, ''))) STORED""",
    "CREATE INDEX ix_session_queries_summary_search ON session_queries USING gin (summary_search)",
]
_PG_DOWNGRADE = [
    "DROP INDEX ix_session_queries_summary_search",
    "ALTER TABLE session_queries DROP COLUMN summary_search",
    "DROP INDEX ix_sessions_context_search",
    "DROP TRIGGER sessions_context_search ON sessions",
    "DROP FUNCTION fiml_session_context_search()",
    "ALTER TABLE sessions DROP COLUMN context_search",
]

_CONTEXT_TEXT = "(SELECT group_concat(value, ' ') FROM json_tree(new.context) WHERE type = 'text')"
_DROP_DOC = """DELETE FROM session_search_fts WHERE rowid IN
      (SELECT doc_id FROM session_search_docs WHERE session_id = {sid} AND part = {part});
    DELETE FROM session_search_docs WHERE session_id = {sid} AND part = {part};"""
_ADD_DOC = """INSERT INTO session_search_docs (session_id, part) VALUES ({sid}, {part});
    INSERT INTO session_search_fts (rowid, body) VALUES (last_insert_rowid(), {body});"""
SQLITE_OBJECTS = (
    "session_search_fts",
    "session_search_docs",
    "session_search_context_insert",
    "session_search_context_update",
    "session_search_context_delete",
    "session_search_summary_insert",
    "session_search_summary_delete",
)
"""What the SQLite upgrade creates outside the ORM schema (``schema.drop_schema`` drops it)."""
_SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS session_search_summary_delete",
    "DROP TRIGGER IF EXISTS session_search_summary_insert",
    "DROP TRIGGER IF EXISTS session_search_context_delete",
    "DROP TRIGGER IF EXISTS session_search_context_update",
    "DROP TRIGGER IF EXISTS session_search_context_insert",
    "DROP TABLE IF EXISTS session_search_docs",
    "DROP TABLE IF EXISTS session_search_fts",
)
"""SQLITE_OBJECTS dropped, last first (constant text: no statement is built from names)."""
_SQLITE_UPGRADE = [
    """CREATE TABLE session_search_docs (
      doc_id INTEGER PRIMARY KEY,
      session_id CHAR(32) NOT NULL,
      part INTEGER NOT NULL,
      UNIQUE (session_id, part))""",
    "CREATE VIRTUAL TABLE session_search_fts USING fts5(body)",
    f"""CREATE TRIGGER session_search_context_insert AFTER INSERT ON sessions BEGIN
    {_ADD_DOC.format(sid="new.id", part=0, body=_CONTEXT_TEXT)}
    END""",
    f"""CREATE TRIGGER session_search_context_update AFTER UPDATE OF context ON sessions BEGIN
    {_DROP_DOC.format(sid="old.id", part=0)}
    {_ADD_DOC.format(sid="new.id", part=0, body=_CONTEXT_TEXT)}
    END""",
    """CREATE TRIGGER session_search_context_delete AFTER DELETE ON sessions BEGIN
    DELETE FROM session_search_fts WHERE rowid IN
      (SELECT doc_id FROM session_search_docs WHERE session_id = old.id);
    DELETE FROM session_search_docs WHERE session_id = old.id;
    END""",
    f"""CREATE TRIGGER session_search_summary_insert AFTER INSERT ON session_queries
    WHEN new.result_summary IS NOT NULL BEGIN
    {_ADD_DOC.format(sid="new.session_id", part="new.seq", body="new.result_summary")}
    END""",
    f"""CREATE TRIGGER session_search_summary_delete AFTER DELETE ON session_queries BEGIN
    {_DROP_DOC.format(sid="old.session_id", part="old.seq")}
    END""",
]


def _index_existing_sqlite(bind: Any) -> None:
    contexts = bind.execute(sa.text("SELECT id, context FROM sessions")).all()
    for sid, context in contexts:
        body = bind.execute(
            sa.text("SELECT group_concat(value, ' ') FROM json_tree(:c) WHERE type = 'text'"),
            {"c": context if isinstance(context, str) else json.dumps(context)},
        ).scalar()
        doc = bind.execute(
            sa.text("INSERT INTO session_search_docs (session_id, part) VALUES (:s, 0)"),
            {"s": sid},
        ).lastrowid
        bind.execute(
            sa.text("INSERT INTO session_search_fts (rowid, body) VALUES (:d, :b)"),
            {"d": doc, "b": body},
        )
    bind.execute(
        sa.text(
            "INSERT INTO session_search_docs (session_id, part) SELECT session_id, seq "
            "FROM session_queries WHERE result_summary IS NOT NULL"
        )
    )
    bind.execute(
        sa.text(
            "INSERT INTO session_search_fts (rowid, body) SELECT d.doc_id, q.result_summary "
            "FROM session_search_docs d JOIN session_queries q "
            "ON q.session_id = d.session_id AND q.seq = d.part WHERE d.part > 0"
        )
    )


_EXISTING_TERMS = {
    "postgresql": [
        "INSERT INTO session_search_terms (session_id, kind, term, user_id, created_at) "
        "SELECT DISTINCT s.id, 'asset', e.value, s.user_id, s.created_at "
        "FROM sessions s, jsonb_array_elements_text(s.assets) AS e(value)",
        "INSERT INTO session_search_terms (session_id, kind, term, user_id, created_at) "
        "SELECT DISTINCT s.id, 'tag', e.value, s.user_id, s.created_at "
        "FROM sessions s, jsonb_array_elements_text(s.tags) AS e(value)",
        "INSERT INTO session_search_terms (session_id, kind, term, user_id, created_at) "
        "SELECT DISTINCT q.session_id, 'asset', upper(trim(q.parameters ->> 'symbol')), "
        "s.user_id, s.created_at FROM session_queries q JOIN sessions s ON s.id = q.session_id "
        "WHERE jsonb_typeof(q.parameters -> 'symbol') = 'string' "
        "AND length(trim(q.parameters ->> 'symbol')) BETWEEN 1 AND 64 ON CONFLICT DO NOTHING",
    ],
    "sqlite": [
        "INSERT INTO session_search_terms (session_id, kind, term, user_id, created_at) "
        "SELECT DISTINCT s.id, 'asset', e.value, s.user_id, s.created_at "
        "FROM sessions s, json_each(s.assets) AS e",
        "INSERT INTO session_search_terms (session_id, kind, term, user_id, created_at) "
        "SELECT DISTINCT s.id, 'tag', e.value, s.user_id, s.created_at "
        "FROM sessions s, json_each(s.tags) AS e",
        "INSERT INTO session_search_terms (session_id, kind, term, user_id, created_at) "
        "SELECT DISTINCT q.session_id, 'asset', "
        "upper(trim(json_extract(q.parameters, '$.symbol'))), s.user_id, s.created_at "
        "FROM session_queries q JOIN sessions s ON s.id = q.session_id "
        "WHERE json_type(q.parameters, '$.symbol') = 'text' "
        "AND length(trim(json_extract(q.parameters, '$.symbol'))) BETWEEN 1 AND 64 "
        "ON CONFLICT DO NOTHING",
    ],
}
"""The assets, tags and query symbols of the sessions stored before this revision (as
``search.query_asset`` reads a symbol: a string, stripped, upper-cased, 1-64 characters)."""


def upgrade() -> None:
    op.create_table(
        "session_search_terms",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", fiml.sessions.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_session_search_terms_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "kind", "term", name=op.f("pk_session_search_terms")),
    )
    op.create_index(
        "ix_session_search_terms_user_term",
        "session_search_terms",
        ["user_id", "kind", "term", "created_at", "session_id"],
    )
    bind = op.get_bind()
    for statement in _EXISTING_TERMS[bind.dialect.name]:
        op.execute(statement)
    if bind.dialect.name == "postgresql":
        for statement in _PG_UPGRADE:
            op.execute(statement)
        return
    for statement in _SQLITE_UPGRADE:
        op.execute(statement)
    _index_existing_sqlite(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DOWNGRADE:
            op.execute(statement)
    else:
        for statement in _SQLITE_DOWNGRADE:
            op.execute(statement)
    op.drop_index("ix_session_search_terms_user_term", table_name="session_search_terms")
    op.drop_table("session_search_terms")
