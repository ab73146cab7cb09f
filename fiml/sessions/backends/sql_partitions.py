"""The archive partitioned by month on PostgreSQL: its DDL, and what retention and the jobs
do with it. SQLite keeps plain tables and none of this applies to it.

Layout (revision 0004). ``sessions`` and ``session_queries`` are partitioned by
``RANGE (archive_month)``, a column only PostgreSQL has (the models do not map it): the
first instant (UTC) of the month a session was archived in, ``'infinity'`` while it is
active. Each table has:

- ``<table>_active``: ``FROM ('infinity') TO (MAXVALUE)``, every active session and its
  queries. A range partition, not the DEFAULT one: adding a monthly partition scans the
  DEFAULT partition, which must therefore stay (nearly) empty;
- ``<table>_yYYYYmMM``: one per month of archived sessions, created ahead by the
  retention job (:func:`ensure_partitions`, the current month and the next two);
- ``<table>_default``: DEFAULT, archived rows of a month without a partition (a session
  imported with an old archive time); retention deletes those row by row.

Why ``archive_month`` and not ``archived_at`` as the key: a partitioned table's primary
key must include its partition key, and a key column cannot be null, as ``archived_at``
of an active session is. The key is ``(id, archive_month)``, so PostgreSQL checks an id's
uniqueness per partition only; ids are random UUIDs, and importing an archived session
looks for its id first (:func:`existing_ids`). A lookup by id alone would probe the
key's index of each partition (one per month of retention); so a statement on an active
session names ``archive_month = 'infinity'`` (inline text: :func:`in_active_partition`),
and the planner prunes it to the active partitions when it plans it, however many months
are kept (:mod:`~fiml.sessions.backends.sql_by_id`). Only a session not found there (an
archived one, or an unknown id) is looked for among the months, in each one's index, and
its queries then in its month's partition alone.
A foreign key to a partitioned table must name its partition key too, and neither
``session_queries`` nor ``session_events`` carries one (0004 drops the events' one): the
backend deletes a session's queries and events itself (:func:`drop_partition` a month's
events before its partitions). A session's queries share its ``archive_month``: archiving moves both
(:func:`move_to_archive`), one transaction.

DDL takes no bound parameters, yet no statement here is built in Python: each is constant
text, PL/pgSQL blocks that take their table names and bounds from transaction-local
settings (bound by ``set_config``) and quote them server-side (``format('%I')``, ``%L``);
the other statements are SQLAlchemy Core, which quotes a partition's name itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    MetaData,
    Table,
    Uuid,
    bindparam,
    column,
    delete,
    exists,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import (
    table as table_named,
)

from fiml.sessions.backends.sql_rows import E, Q, S
from fiml.sessions.backends.sql_search import T as TERMS
from fiml.sessions.quarantine import QUARANTINE

__all__ = [
    "ACTIVE_MONTH",
    "ARCHIVE_MONTH",
    "LOCK_TIMEOUT",
    "MONTHS_AHEAD",
    "PARTITIONED_TABLES",
    "QUERY_CONFLICT_COLUMNS",
    "DroppedPartition",
    "archive_month",
    "archive_partitions",
    "archived_months",
    "compared_with_models",
    "drop_partition",
    "ensure_partitions",
    "existing_ids",
    "in_active_partition",
    "is_partition_name",
    "is_partitioned",
    "month_partitions",
    "months_from",
    "move_to_archive",
    "partition_name",
    "queries_table",
    "sessions_table",
]

ARCHIVE_MONTH = "archive_month"
ACTIVE_MONTH = "infinity"
"""The ``archive_month`` of an active session (the column's default)."""
MONTHS_AHEAD = 2
"""Monthly partitions exist for the current month and this many after it."""
LOCK_TIMEOUT = "5s"
"""How long partition DDL waits for its lock on the parent table (creating or dropping a
partition takes an exclusive lock for an instant); past it the run fails and the next run
tries again, rather than queueing every session read behind a long transaction."""
PARTITIONED_TABLES = (S.name, Q.name)
QUERY_CONFLICT_COLUMNS = ("session_id", ARCHIVE_MONTH, "id")
"""The unique key of a query on PostgreSQL, ``ON CONFLICT``'s target there (a unique
index of a partitioned table includes its partition key; a session's queries share one
month, so it is as strict as ``(session_id, id)``)."""
_MONTH_SUFFIX = re.compile(r"_y(\d{4})m(\d{2})$")


def _with_month(table: Table) -> Table:
    """``table`` as PostgreSQL holds it, with ``archive_month``: for the statements that
    set it (a metadata of its own, so the models' tables stay as they are)."""
    columns = [Column(c.name, c.type, key=c.key, primary_key=c.primary_key) for c in table.c]
    month = Column(
        ARCHIVE_MONTH,
        DateTime(timezone=True),
        primary_key=True,
        server_default=ACTIVE_MONTH,  # rendered by SQLAlchemy as a quoted literal
    )
    return Table(table.name, MetaData(), *columns, month)


sessions_table = _with_month(S)
queries_table = _with_month(Q)

# Inline text, not a bound parameter: the planner prunes on it when it plans, a cached
# generic plan included, which then names the active partition only. (ACTIVE_MONTH, quoted.)
_ACTIVE = literal_column("'infinity'", DateTime(timezone=True))


def in_active_partition(table: Table) -> ColumnElement[bool]:
    """``table`` (:data:`sessions_table`, :data:`queries_table`) held to its active
    partition: ``archive_month = 'infinity'``."""
    return table.c[ARCHIVE_MONTH] == _ACTIVE


def archived_months(table: Table) -> ColumnElement[bool]:
    """``table`` held to its partitions of archived months (and the DEFAULT one)."""
    return table.c[ARCHIVE_MONTH] < _ACTIVE


def is_partitioned(conn: Connection) -> bool:
    """Whether the archive on this connection is partitioned (PostgreSQL from 0004 on)."""
    return conn.dialect.name == "postgresql"


def archive_month(moment: datetime) -> datetime:
    """The first instant (UTC) of the month of ``moment``: its partition's lower bound."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _next_month(month: datetime) -> datetime:
    year, index = divmod(month.year * 12 + month.month, 12)  # month.month is 1-based
    return datetime(year, index + 1, 1, tzinfo=UTC)


def partition_name(table: str, month: datetime) -> str:
    """The name of ``table``'s partition for ``month``: ``sessions_y2026m12``."""
    return f"{table}_y{month.year:04d}m{month.month:02d}"


def is_partition_name(name: str) -> bool:
    """True for the name of a partition of an archive table (monthly, active, default)."""
    return any(
        name in (f"{table}_active", f"{table}_default")
        or (name.startswith(f"{table}_y") and _MONTH_SUFFIX.search(name) is not None)
        for table in PARTITIONED_TABLES
    )


def month_partitions(conn: Connection, table: str) -> dict[datetime, str]:
    """``table``'s monthly partitions by month, from the catalog."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:parent AS regclass)"
        ),
        {"parent": table},
    ).scalars()
    months = {}
    for name in rows:
        found = _MONTH_SUFFIX.search(name)
        if found and name == f"{table}_y{found[1]}m{found[2]}":
            months[datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC)] = name
    return months


# The DDL names tables (a partition's name derives from its month) and gives bounds, which
# DDL takes no bind parameters for. So no statement here is built in Python: each is
# constant text whose names and values arrive as bind parameters of ``set_config`` (local
# to the transaction) and are quoted by PostgreSQL itself, ``format('%I')`` for a name and
# ``%L`` for a value, in a PL/pgSQL block.
_SET_PARTITION = text(
    "SELECT set_config('fiml.parent', :parent, true), "
    "set_config('fiml.partition', :partition, true), "
    "set_config('fiml.low', :low, true), set_config('fiml.high', :high, true)"
)
_SET_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :timeout, true)")
_CREATE_MONTH = text(
    """DO $$
DECLARE
    parent text := current_setting('fiml.parent');
    low timestamptz := CAST(current_setting('fiml.low') AS timestamptz);
    high timestamptz := CAST(current_setting('fiml.high') AS timestamptz);
    columns text;
BEGIN
    EXECUTE format('CREATE TEMPORARY TABLE fiml_moving (LIKE %I) ON COMMIT DROP', parent);
    EXECUTE format(
        'WITH moved AS (DELETE FROM %I WHERE archive_month >= $1 AND archive_month < $2 '
        'RETURNING *) INSERT INTO fiml_moving SELECT * FROM moved',
        parent || '_default'
    ) USING low, high;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
        current_setting('fiml.partition'), parent, low, high
    );
    -- A generated column (0005's summary_search) takes no value: the columns but those.
    SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
    INTO columns FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = parent AND is_generated = 'NEVER';
    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM fiml_moving', parent, columns, columns);
    DROP TABLE fiml_moving;
END
$$"""
)
_LOCK_MONTH = text(
    """DO $$
BEGIN
    EXECUTE format(
        'LOCK TABLE %I, %I IN ACCESS EXCLUSIVE MODE',
        current_setting('fiml.parent'), current_setting('fiml.partition')
    );
END
$$"""
)
_DROP_MONTH = text(
    """DO $$
BEGIN
    EXECUTE format('DROP TABLE %I', current_setting('fiml.partition'));
    EXECUTE format('DROP TABLE %I', current_setting('fiml.parent'));
END
$$"""
)


def _set_partition(conn: Connection, parent: str, partition: str, month: datetime) -> None:
    bounds = {"low": month.isoformat(), "high": _next_month(month).isoformat()}
    conn.execute(_SET_PARTITION, {"parent": parent, "partition": partition, **bounds})


def _create_month(conn: Connection, table: str, month: datetime) -> None:
    """``table``'s partition for ``month``; rows of that month already in the DEFAULT
    partition (imported before it existed) are moved into it: PostgreSQL refuses a new
    partition whose range the DEFAULT partition holds rows of."""
    _set_partition(conn, table, partition_name(table, month), month)
    conn.execute(_CREATE_MONTH)


def ensure_partitions(conn: Connection, months: Sequence[datetime]) -> int:
    """Create the monthly partitions of both archive tables missing for ``months`` (any
    instant of each); returns how many it created. PostgreSQL only."""
    conn.execute(_SET_LOCK_TIMEOUT, {"timeout": LOCK_TIMEOUT})
    created = 0
    for table in PARTITIONED_TABLES:
        present = month_partitions(conn, table)
        for month in sorted({archive_month(m) for m in months}):
            if month not in present:
                _create_month(conn, table, month)
                created += 1
    return created


def months_from(now: datetime, ahead: int = MONTHS_AHEAD) -> list[datetime]:
    """The current month of ``now`` and the ``ahead`` after it."""
    months = [archive_month(now)]
    for _ in range(ahead):
        months.append(_next_month(months[-1]))
    return months


@dataclass(frozen=True, slots=True)
class DroppedPartition:
    """A month retention dropped whole, and how many sessions it held."""

    month: datetime
    sessions: int


def archive_partitions(conn: Connection, cutoff: datetime) -> list[datetime]:
    """The months whose partitions lie wholly before ``cutoff``, oldest first."""
    return sorted(m for m in month_partitions(conn, S.name) if _next_month(m) <= cutoff)


def drop_partition(conn: Connection, month: datetime) -> DroppedPartition | None:
    """Drop ``month``'s partitions of both tables, unless one of its sessions is
    quarantined (retention keeps those: the caller deletes that month row by row). The
    month's timelines go first: ``session_events`` has no foreign key to cascade from the
    partitioned sessions.

    The sessions partition is locked before it is counted, so that no row arrives
    between the count and the drop uncounted.
    """
    conn.execute(_SET_LOCK_TIMEOUT, {"timeout": LOCK_TIMEOUT})
    sessions, queries = (partition_name(table, month) for table in PARTITIONED_TABLES)
    # The DO blocks read the two names as parent and partition: the sessions and queries
    # partitions here, not a parent and its child.
    _set_partition(conn, sessions, queries, month)
    conn.execute(_LOCK_MONTH)
    held = table_named(sessions, column("id", Uuid()))  # SQLAlchemy quotes the name
    kept = conn.execute(select(exists().where(held.c.id == QUARANTINE.c.session_id))).scalar_one()
    if kept:
        return None
    count = int(conn.execute(select(func.count()).select_from(held)).scalar_one())
    conn.execute(delete(E).where(E.c.session_id.in_(select(held.c.id))))
    conn.execute(delete(TERMS).where(TERMS.c.session_id.in_(select(held.c.id))))
    conn.execute(_DROP_MONTH)
    return DroppedPartition(month, count)


_MOVE_SESSIONS = (
    update(sessions_table)
    .where(
        sessions_table.c.id.in_(bindparam("ids", expanding=True)),
        in_active_partition(sessions_table),
    )
    .values({ARCHIVE_MONTH: bindparam("month")})
)
_MOVE_QUERIES = (
    update(queries_table)
    .where(
        queries_table.c.session_id.in_(bindparam("ids", expanding=True)),
        in_active_partition(queries_table),
    )
    .values({ARCHIVE_MONTH: bindparam("month")})
)


def move_to_archive(conn: Connection, session_ids: Sequence[UUID], archived_at: datetime) -> None:
    """Move sessions just archived in place, and their queries, from the active partition
    into their month's (the DEFAULT one if that month has none)."""
    if session_ids:
        params: dict[str, Any] = {"ids": list(session_ids), "month": archive_month(archived_at)}
        conn.execute(_MOVE_SESSIONS, params)
        conn.execute(_MOVE_QUERIES, params)


def existing_ids(conn: Connection, session_ids: Sequence[UUID]) -> set[UUID]:
    """Which of ``session_ids`` are stored, in any partition."""
    if not session_ids:
        return set()
    return set(conn.execute(select(S.c.id).where(S.c.id.in_(list(session_ids)))).scalars())


def compared_with_models(
    item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object``: leaves out of a comparison of the models with a
    PostgreSQL database what revision 0004 makes differ on purpose (the partitions and
    their indexes, ``archive_month``, the foreign keys of the queries and events to the
    sessions, the queries' unique key, which includes it); everything else is compared."""
    table = getattr(item, "table", item if type_ == "table" else None)
    table_name = getattr(table, "name", None)
    if type_ == "table" and name is not None and is_partition_name(name):
        return False
    if table_name is not None and is_partition_name(table_name):
        return False
    if type_ == "column" and name == ARCHIVE_MONTH and reflected:
        return False
    if type_ == "foreign_key_constraint" and table_name in (Q.name, E.name, TERMS.name):
        # To the partitioned sessions: absent from the database on PostgreSQL
        return reflected or compare_to is not None
    if table_name != Q.name:
        return True
    if type_ == "unique_constraint":  # with archive_month on either side: PostgreSQL's
        return not any(_has_month(key) for key in (item, compare_to))
    return True


def _has_month(constraint: Any) -> bool:
    return constraint is not None and ARCHIVE_MONTH in {c.name for c in constraint.columns}
