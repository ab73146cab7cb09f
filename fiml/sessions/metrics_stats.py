"""Usage statistics aggregated by the database over the recorded facts of finished sessions.

Every figure is a ``COUNT``/``SUM``/``AVG``/``GROUP BY`` run in the database over
``session_metrics`` and its side tables (:mod:`fiml.sessions.metrics`); nothing is computed
by loading sessions into Python. Rankings and distributions are ordered by count, then by
name in byte order, the same on both dialects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, case, desc, func, select

from fiml.sessions.metrics import ABANDONED, MA, MQ, MT, M, MetricFilters

__all__ = ["FinishedStats", "finished_stats"]


@dataclass(frozen=True, slots=True)
class FinishedStats:
    """Aggregates over the recorded sessions of a window."""

    sessions: int
    queries: int
    cache_hits: int
    abandoned: int
    avg_duration_seconds: float
    top_assets: list[tuple[str, int]]
    popular_tags: list[tuple[str, int]]
    query_types: dict[str, int]
    """Queries per query type, most used first."""
    session_types: dict[str, int]
    """Sessions per session type, most used first."""


def _by_name(conn: Connection, column: Any) -> Any:
    # Ties rank by byte order on both dialects, whatever PostgreSQL's default collation.
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def _ranking(
    conn: Connection, table: Table, column: str, where: list[ColumnElement[bool]], top: int
) -> list[tuple[str, int]]:
    name = table.c[column]
    count = func.count().label("n")
    stmt = (
        select(name, count)
        .join(M, M.c.session_id == table.c.session_id)
        .where(*where)
        .group_by(name)
        .order_by(desc(count), _by_name(conn, name))
        .limit(top)
    )
    return [(str(k), int(n)) for k, n in (conn.execute(stmt)).all()]


def _distribution(
    conn: Connection, key: Any, amount: Any, where: list[ColumnElement[bool]], join: bool
) -> dict[str, int]:
    total = amount.label("n")
    stmt = select(key, total)
    if join:
        stmt = stmt.join(M, M.c.session_id == MQ.c.session_id)
    stmt = stmt.where(*where).group_by(key).order_by(desc(total), _by_name(conn, key))
    return {str(k): int(n) for k, n in (conn.execute(stmt)).all()}


def finished_stats(
    conn: Connection, filters: MetricFilters, since: datetime, *, top: int
) -> FinishedStats:
    """The aggregates over the recorded sessions ``filters`` select that were created at or
    after ``since``; ``top`` bounds the rankings. Run them all on one snapshot connection
    for figures that agree with each other."""
    where = filters.conditions(since)
    abandoned = func.sum(case((ABANDONED, 1), else_=0))
    summary = select(
        func.count(),
        func.coalesce(func.sum(M.c.total_queries), 0),
        func.avg(M.c.duration_seconds),
        func.coalesce(func.sum(M.c.cache_hits), 0),
        func.coalesce(abandoned, 0),
    ).where(*where)
    finished, queries, avg_duration, hits, dropped = (conn.execute(summary)).one()
    return FinishedStats(
        sessions=int(finished),
        queries=int(queries),
        cache_hits=int(hits),
        abandoned=int(dropped),
        avg_duration_seconds=float(avg_duration or 0.0),
        top_assets=_ranking(conn, MA, "asset", where, top),
        popular_tags=_ranking(conn, MT, "tag", where, top),
        query_types=_distribution(conn, MQ.c.query_type, func.sum(MQ.c.queries), where, join=True),
        session_types=_distribution(conn, M.c.session_type, func.count(), where, join=False),
    )
