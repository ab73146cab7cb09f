"""Exporting recorded session facts as JSON or CSV, and writing exports safely to disk.

Rows are read a page at a time (keyset pagination on ``created_at, session_id``) with
their assets, tags and query-type counts from the side tables, so an export never holds
more than a page of database rows beyond the document it builds.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from fiml.core.errors import InvalidInputError
from fiml.sessions.metrics import MA, MQ, MT, M, MetricFilters
from fiml.sessions.models import utcnow

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "read_export_rows",
    "render_export",
    "resolve_export_path",
    "write_export",
]

EXPORT_FORMATS = ("json", "csv")
CSV_COLUMNS = (
    "session_id",
    "user_id",
    "session_type",
    "created_at",
    "ended_at",
    "duration_seconds",
    "total_queries",
    "cache_hits",
    "completed",
    "assets",
    "tags",
    "query_types",
)
_PAGE = 1000


async def _side_rows(
    conn: AsyncConnection, ids: list[UUID]
) -> tuple[dict[UUID, list[str]], dict[UUID, list[str]], dict[UUID, dict[str, int]]]:
    assets: dict[UUID, list[str]] = defaultdict(list)
    tags: dict[UUID, list[str]] = defaultdict(list)
    types: dict[UUID, dict[str, int]] = defaultdict(dict)
    for sid, asset in await conn.execute(
        select(MA.c.session_id, MA.c.asset).where(MA.c.session_id.in_(ids)).order_by(MA.c.asset)
    ):
        assets[sid].append(asset)
    for sid, tag in await conn.execute(
        select(MT.c.session_id, MT.c.tag).where(MT.c.session_id.in_(ids)).order_by(MT.c.tag)
    ):
        tags[sid].append(tag)
    for sid, kind, n in await conn.execute(
        select(MQ.c.session_id, MQ.c.query_type, MQ.c.queries)
        .where(MQ.c.session_id.in_(ids))
        .order_by(MQ.c.query_type)
    ):
        types[sid][kind] = int(n)
    return assets, tags, types


async def read_export_rows(
    conn: AsyncConnection, filters: MetricFilters, since: datetime
) -> list[dict[str, Any]]:
    """Every recorded session of the window, oldest first, as JSON-ready dicts."""
    exported: list[dict[str, Any]] = []
    after: tuple[datetime, UUID] | None = None
    while True:
        stmt = select(M).where(*filters.conditions(since))
        if after is not None:
            stmt = stmt.where(
                or_(
                    M.c.created_at > after[0],
                    and_(M.c.created_at == after[0], M.c.session_id > after[1]),
                )
            )
        stmt = stmt.order_by(M.c.created_at, M.c.session_id).limit(_PAGE)
        rows = (await conn.execute(stmt)).all()
        if not rows:
            return exported
        assets, tags, types = await _side_rows(conn, [r.session_id for r in rows])
        for r in rows:
            exported.append(
                {
                    "session_id": str(r.session_id),
                    "user_id": r.user_id,
                    "session_type": r.session_type,
                    "created_at": r.created_at.isoformat(),
                    "ended_at": r.ended_at.isoformat(),
                    "duration_seconds": float(r.duration_seconds),
                    "total_queries": int(r.total_queries),
                    "cache_hits": int(r.cache_hits),
                    "completed": bool(r.completed),
                    "assets": assets.get(r.session_id, []),
                    "tags": tags.get(r.session_id, []),
                    "query_types": types.get(r.session_id, {}),
                }
            )
        if len(rows) < _PAGE:
            return exported
        after = (rows[-1].created_at, rows[-1].session_id)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, dict):
        return ";".join(f"{k}:{v}" for k, v in value.items())
    if value is None:
        return ""
    return value


def render_export(
    format: str,
    filters: MetricFilters,
    stats: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
) -> str:
    """The export document: JSON with the stats and the sessions, or CSV of the sessions.

    In CSV, lists are joined with ``;`` and query types are written ``type:count``.
    """
    if format == "json":
        document = {
            "generated_at": utcnow().isoformat(),
            "filters": {
                "user_id": filters.user_id,
                "session_type": filters.session_type,
                "days": filters.days,
            },
            "stats": dict(stats),
            "sessions": list(rows),
        }
        return json.dumps(document, indent=2)
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(row[k]) for k in CSV_COLUMNS})
        return buffer.getvalue()
    raise InvalidInputError("format", format, "must be 'json' or 'csv'")


def resolve_export_path(path: str | Path, directory: str | Path | None) -> Path:
    """``path`` inside ``directory`` (default: the working directory), fully resolved.

    A path that leads outside the directory (``..``, an absolute path elsewhere, a symlink
    pointing out) is an InvalidInputError.
    """
    if not isinstance(path, str | Path) or not str(path).strip():
        raise InvalidInputError("path", path, "must be a non-empty file path")
    try:
        base = Path(directory if directory is not None else Path.cwd()).resolve()
        target = (base / Path(path).expanduser()).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        # A NUL byte, a name the file system cannot encode, an unknown home directory.
        raise InvalidInputError("path", str(path), f"is not a usable file path ({exc})") from None
    if not target.is_relative_to(base) or target == base:
        raise InvalidInputError("path", str(path), f"must name a file inside {base}")
    return target


def _write_atomically(target: Path, document: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(document)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def write_export(target: Path, document: str) -> None:
    """Write ``document`` to ``target`` (replacing it whole) off the event loop."""
    await asyncio.to_thread(_write_atomically, target, document)
