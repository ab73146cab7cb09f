"""The archive partitioned by month on PostgreSQL (SQLite: nothing changes).

``sessions`` and ``session_queries`` become ``RANGE (archive_month)`` partitioned tables
(see ``fiml.sessions.backends.sql_partitions``): the rows are copied into the new tables
in the migration's transaction, counted on both sides (a difference aborts the
migration, changing nothing), then the old tables are dropped.
``session_events`` loses its foreign key to ``sessions`` there (PostgreSQL refuses one to a
partitioned table that does not name its partition key): the backend deletes a session's
events itself. SQLite keeps it. The downgrade restores it. The tables are locked for
the whole copy: see docs/OPERATIONS.md for the maintenance window this needs.

Revision ID: 0004
Revises: 0005
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import op
from sqlalchemy import Connection, func, select, table, text

from fiml.sessions.backends.sql_partitions import ensure_partitions, months_from

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every statement is constant text (no name or value is formatted into SQL in Python);
# the partition key is ``archive_month``, ``'infinity'`` for an active session
# (fiml.sessions.backends.sql_partitions.ARCHIVE_MONTH and ACTIVE_MONTH).
_SESSION_INDEXES = (
    "CREATE INDEX ix_sessions_user_created ON sessions (user_id, created_at, id)",
    "CREATE INDEX ix_sessions_active_expiry ON sessions (expires_at) WHERE archived_at IS NULL",
    "CREATE INDEX ix_sessions_archived_at ON sessions (archived_at) WHERE archived_at IS NOT NULL",
)
_DROP_FOREIGN_KEYS = (
    "ALTER TABLE session_events DROP CONSTRAINT fk_session_events_session_id_sessions",
    "ALTER TABLE session_search_terms DROP CONSTRAINT fk_session_search_terms_session_id_sessions",
)
_ADD_FOREIGN_KEYS = (
    "ALTER TABLE session_events ADD CONSTRAINT fk_session_events_session_id_sessions "
    "FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE",
    "ALTER TABLE session_search_terms ADD CONSTRAINT fk_session_search_terms_session_id_sessions "
    "FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE",
)
# 0005's full-text search: the trigger filling sessions.context_search and both GIN indexes
# (summary_search is a generated column: LIKE ... INCLUDING GENERATED keeps it).
_FULL_TEXT = (
    "CREATE TRIGGER sessions_context_search BEFORE INSERT OR UPDATE OF context ON sessions "
    "FOR EACH ROW EXECUTE FUNCTION fiml_session_context_search()",
    "CREATE INDEX ix_sessions_context_search ON sessions USING gin (context_search)",
    "CREATE INDEX ix_session_queries_summary_search ON session_queries USING gin (summary_search)",
)
_PARTITION = (
    "LOCK TABLE sessions, session_queries, session_events, session_search_terms "
    "IN ACCESS EXCLUSIVE MODE",
    *_DROP_FOREIGN_KEYS,
    "ALTER TABLE sessions RENAME TO sessions_unpartitioned",
    "ALTER TABLE session_queries RENAME TO session_queries_unpartitioned",
    "CREATE TABLE sessions (LIKE sessions_unpartitioned INCLUDING DEFAULTS INCLUDING GENERATED, "
    "archive_month timestamptz NOT NULL DEFAULT 'infinity') PARTITION BY RANGE (archive_month)",
    "CREATE TABLE session_queries (LIKE session_queries_unpartitioned INCLUDING DEFAULTS "
    "INCLUDING GENERATED, "
    "archive_month timestamptz NOT NULL DEFAULT 'infinity') PARTITION BY RANGE (archive_month)",
    "CREATE TABLE sessions_active PARTITION OF sessions FOR VALUES FROM ('infinity') TO (MAXVALUE)",
    "CREATE TABLE sessions_default PARTITION OF sessions DEFAULT",
    "CREATE TABLE session_queries_active PARTITION OF session_queries "
    "FOR VALUES FROM ('infinity') TO (MAXVALUE)",
    "CREATE TABLE session_queries_default PARTITION OF session_queries DEFAULT",
)
# The month of archived_at, in UTC: the partition an archived session goes to.
_ARCHIVED_MONTHS = (
    "SELECT DISTINCT date_trunc('month', archived_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
    "FROM sessions_unpartitioned WHERE archived_at IS NOT NULL"
)
# The copy runs before the keys and indexes exist: one build per index, not a
# maintenance per row.
_COPY = (
    "INSERT INTO sessions SELECT *, COALESCE(date_trunc('month', archived_at AT TIME ZONE "
    "'UTC') AT TIME ZONE 'UTC', 'infinity') FROM sessions_unpartitioned",
    # A generated column (0005's summary_search) takes no value: the columns but those.
    """DO $$
DECLARE
    columns text;
    selected text;
BEGIN
    SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position),
           string_agg('q.' || quote_ident(column_name), ', ' ORDER BY ordinal_position)
    INTO columns, selected FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'session_queries_unpartitioned'
      AND is_generated = 'NEVER';
    EXECUTE format(
        'INSERT INTO session_queries (%s, archive_month) SELECT %s, s.archive_month '
        'FROM session_queries_unpartitioned q JOIN sessions s ON s.id = q.session_id',
        columns, selected
    );
END
$$""",
)
_KEYS = (
    "DROP TABLE session_queries_unpartitioned",
    "DROP TABLE sessions_unpartitioned",
    "ALTER TABLE sessions ADD CONSTRAINT pk_sessions PRIMARY KEY (id, archive_month)",
    *_SESSION_INDEXES,
    "ALTER TABLE session_queries ADD CONSTRAINT pk_session_queries "
    "PRIMARY KEY (session_id, archive_month, seq)",
    "ALTER TABLE session_queries ADD CONSTRAINT uq_session_queries_session_id_id "
    "UNIQUE (session_id, archive_month, id)",
    *_FULL_TEXT,
)
_UNPARTITION = (
    "LOCK TABLE sessions, session_queries, session_events, session_search_terms "
    "IN ACCESS EXCLUSIVE MODE",
    "ALTER TABLE sessions RENAME TO sessions_partitioned",
    "ALTER TABLE session_queries RENAME TO session_queries_partitioned",
    "ALTER TABLE sessions_partitioned RENAME CONSTRAINT pk_sessions TO pk_sessions_partitioned",
    "ALTER TABLE session_queries_partitioned "
    "RENAME CONSTRAINT pk_session_queries TO pk_session_queries_partitioned",
    "ALTER TABLE session_queries_partitioned RENAME CONSTRAINT "
    "uq_session_queries_session_id_id TO uq_session_queries_partitioned",
    "ALTER INDEX ix_sessions_user_created RENAME TO ix_sessions_partitioned_user",
    "ALTER INDEX ix_sessions_active_expiry RENAME TO ix_sessions_partitioned_expiry",
    "ALTER INDEX ix_sessions_archived_at RENAME TO ix_sessions_partitioned_archived",
    "ALTER INDEX ix_sessions_context_search RENAME TO ix_sessions_partitioned_context",
    "ALTER INDEX ix_session_queries_summary_search RENAME TO ix_queries_partitioned_summary",
    "CREATE TABLE sessions (LIKE sessions_partitioned INCLUDING DEFAULTS)",
    "ALTER TABLE sessions DROP COLUMN archive_month",
    "CREATE TABLE session_queries (LIKE session_queries_partitioned INCLUDING DEFAULTS "
    "INCLUDING GENERATED)",
    "ALTER TABLE session_queries DROP COLUMN archive_month",
)
# Every column but archive_month, in order (a later revision may add some), listed and
# quoted by PostgreSQL.
_COPY_BACK = """DO $$
DECLARE
    name text;
    columns text;
BEGIN
    FOREACH name IN ARRAY ARRAY['sessions', 'session_queries'] LOOP
        SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
        INTO columns FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = name AND is_generated = 'NEVER';
        EXECUTE format(
            'INSERT INTO %I (%s) SELECT %s FROM %I', name, columns, columns, name || '_partitioned'
        );
    END LOOP;
END
$$"""
_UNPARTITIONED_KEYS = (
    "DROP TABLE session_queries_partitioned",
    "DROP TABLE sessions_partitioned",
    "ALTER TABLE sessions ADD CONSTRAINT pk_sessions PRIMARY KEY (id)",
    *_SESSION_INDEXES,
    "ALTER TABLE session_queries ADD CONSTRAINT pk_session_queries PRIMARY KEY (session_id, seq)",
    "ALTER TABLE session_queries ADD CONSTRAINT uq_session_queries_session_id_id "
    "UNIQUE (session_id, id)",
    "ALTER TABLE session_queries ADD CONSTRAINT fk_session_queries_session_id_sessions "
    "FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE",
    *_ADD_FOREIGN_KEYS,
    *_FULL_TEXT,
)


def _run(statements: Sequence[str]) -> None:
    for statement in statements:
        op.execute(statement)


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def _same_rows(conn: Connection, old: str, new: str) -> None:
    before, after = _count(conn, old), _count(conn, new)
    if before != after:  # raised inside the transaction: the migration changes nothing
        raise RuntimeError(f"{new}: {after} rows copied of {before}; nothing was changed")


def _archived_months(conn: Connection) -> list[datetime]:
    found = conn.execute(text(_ARCHIVED_MONTHS)).scalars()
    return [month.astimezone(UTC) for month in found]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    # Locked first: no session may change between the copy and the drop of the old tables.
    _run(_PARTITION)
    ensure_partitions(conn, [*_archived_months(conn), *months_from(datetime.now(UTC))])
    _run(_COPY)
    _same_rows(conn, "sessions_unpartitioned", "sessions")
    _same_rows(conn, "session_queries_unpartitioned", "session_queries")
    _run(_KEYS)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    _run(_UNPARTITION)
    conn.execute(text(_COPY_BACK))
    _same_rows(conn, "sessions_partitioned", "sessions")
    _same_rows(conn, "session_queries_partitioned", "session_queries")
    _run(_UNPARTITIONED_KEYS)
