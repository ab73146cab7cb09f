"""Exporting recorded session facts as JSON or CSV, and writing exports safely to disk.

Rows are read a page at a time (keyset pagination on ``created_at, session_id``) with
their assets, tags and query-type counts from the side tables, so an export never holds
more than a page of database rows beyond the document it builds. Each row is decoded on
its own (:mod:`fiml.sessions.row_decoding`): a record that cannot be read is left out,
logged, and listed in the JSON document's ``skipped``; the others are exported.
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
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from fiml.core.errors import InvalidInputError, StorageRefusedError
from fiml.sessions.metrics import ABANDONED, MA, MQ, MT, M, MetricFilters
from fiml.sessions.models import utcnow
from fiml.sessions.row_decoding import (
    RowReader,
    SkippedRecord,
    as_stored,
    report_skipped,
    shown_id,
)

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
    "abandoned",
    "assets",
    "tags",
    "query_types",
)
_PAGE = 1000


ROW_COLUMNS: dict[str, ColumnElement[Any]] = {
    "session_id": M.c.session_id,
    "user_id": M.c.user_id,
    "session_type": M.c.session_type,
    "created_at": M.c.created_at,
    "ended_at": M.c.ended_at,
    "duration_seconds": M.c.duration_seconds,
    "total_queries": M.c.total_queries,
    "cache_hits": M.c.cache_hits,
    "completed": M.c.completed,
    "abandoned": ABANDONED,
}
_KEY = (as_stored(M.c.created_at), as_stored(M.c.session_id))


@dataclass(frozen=True, slots=True)
class MetricRowsPage:
    """One page of recorded sessions: those that could be read, those that could not, and
    where the next page starts (None after the last page)."""

    rows: list[dict[str, Any]]
    skipped: list[SkippedRecord]
    after: tuple[Any, Any] | None


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is not a count")
    return value


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A decoded ``session_metrics`` row as JSON-ready values; a ValueError if damaged."""
    duration = row["duration_seconds"]
    checks = {
        "session_id": isinstance(row["session_id"], UUID),
        "user_id": row["user_id"] is None or isinstance(row["user_id"], str),
        "session_type": isinstance(row["session_type"], str),
        "created_at": isinstance(row["created_at"], datetime),
        "ended_at": isinstance(row["ended_at"], datetime),
        "duration_seconds": isinstance(duration, int | float) and not isinstance(duration, bool),
        "completed": isinstance(row["completed"], bool),
    }
    for name, good in checks.items():
        if not good:
            raise ValueError(f"{name} holds {type(row[name]).__name__} {row[name]!r:.40}")
    return {
        **row,
        "session_id": str(row["session_id"]),
        "created_at": row["created_at"].isoformat(),
        "ended_at": row["ended_at"].isoformat(),
        "duration_seconds": float(duration),
        "total_queries": _count("total_queries", row["total_queries"]),
        "cache_hits": _count("cache_hits", row["cache_hits"]),
        "abandoned": bool(row["abandoned"]),
    }


async def read_metric_rows_page(
    conn: AsyncConnection,
    conditions: Sequence[ColumnElement[bool]],
    *,
    after: tuple[Any, Any] | None,
    limit: int,
    newest_first: bool = False,
) -> MetricRowsPage:
    """Up to ``limit`` recorded sessions matching ``conditions``, ordered by creation then
    id, after the key ``after``; each row is decoded on its own (see ``row_decoding``)."""
    created, sid = _KEY
    read = RowReader(conn.dialect, ROW_COLUMNS)
    stmt = select(*read.columns, *_KEY).where(*conditions)
    if after is not None:
        # Keys compared as stored, so a row with a damaged key is still passed over once.
        later = tuple_(created, sid) < after if newest_first else tuple_(created, sid) > after
        stmt = stmt.where(later)
    order: list[Any] = [M.c.created_at, M.c.session_id]
    if newest_first:
        order = [column.desc() for column in order]
    rows = (await conn.execute(stmt.order_by(*order).limit(limit))).all()
    good: list[dict[str, Any]] = []
    skipped: list[SkippedRecord] = []
    for row in rows:
        try:
            good.append(_json_row(read(row)))
        except ValueError as exc:
            skipped.append(SkippedRecord(shown_id(row[-1]), str(exc)))
    last = (rows[-1][-2], rows[-1][-1]) if len(rows) == limit else None
    return MetricRowsPage(good, skipped, last)


async def _side_rows(
    conn: AsyncConnection, table: Table, names: Sequence[str], ids: list[UUID]
) -> list[dict[str, Any]]:
    """The rows of a side table for ``ids``, decoded one at a time, ordered by ``names``."""
    columns = {"session_id": table.c.session_id, **{n: table.c[n] for n in names}}
    read = RowReader(conn.dialect, columns)
    stmt = select(*read.columns).where(table.c.session_id.in_(ids))
    stmt = stmt.order_by(*(table.c[n] for n in names))
    decoded = []
    for row in (await conn.execute(stmt)).all():
        try:
            decoded.append(read(row))
        except ValueError:
            continue  # its session id is damaged, so it belongs to none of ``ids``
    return decoded


async def _with_side_rows(
    conn: AsyncConnection, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[SkippedRecord]]:
    """``rows`` with their assets, tags and query-type counts; a session one of whose
    side rows holds a value of the wrong kind is skipped."""
    ids = [UUID(r["session_id"]) for r in rows]
    labels: dict[str, dict[UUID, list[str]]] = {
        "assets": defaultdict(list),
        "tags": defaultdict(list),
    }
    types: dict[UUID, dict[str, int]] = defaultdict(dict)
    damaged: dict[UUID, str] = {}
    for key, table, column in (("assets", MA, "asset"), ("tags", MT, "tag")):
        for side in await _side_rows(conn, table, [column], ids):
            if isinstance(side[column], str):
                labels[key][side["session_id"]].append(side[column])
            else:
                damaged[side["session_id"]] = f"{table.name} holds {side[column]!r:.40}"
    for side in await _side_rows(conn, MQ, ["query_type", "queries"], ids):
        kind, n = side["query_type"], side["queries"]
        if isinstance(kind, str) and isinstance(n, int) and not isinstance(n, bool):
            types[side["session_id"]][kind] = n
        else:
            damaged[side["session_id"]] = f"{MQ.name} holds {kind!r:.40}: {n!r:.40}"
    good: list[dict[str, Any]] = []
    skipped: list[SkippedRecord] = []
    for row, sid in zip(rows, ids, strict=True):
        if sid in damaged:
            skipped.append(SkippedRecord(str(sid), damaged[sid]))
            continue
        side_values = {key: labels[key].get(sid, []) for key in labels}
        good.append({**row, **side_values, "query_types": types.get(sid, {})})
    return good, skipped


async def read_export_rows(
    conn: AsyncConnection, filters: MetricFilters, since: datetime
) -> tuple[list[dict[str, Any]], list[SkippedRecord]]:
    """Every recorded session of the window, oldest first, as JSON-ready dicts, and the
    records that could not be read (logged with their session ids)."""
    exported: list[dict[str, Any]] = []
    skipped: list[SkippedRecord] = []
    after: tuple[Any, Any] | None = None
    while True:
        page = await read_metric_rows_page(
            conn, filters.conditions(since), after=after, limit=_PAGE
        )
        rows, unreadable = await _with_side_rows(conn, page.rows) if page.rows else ([], [])
        exported.extend(rows)
        for damaged in (page.skipped, unreadable):
            report_skipped(damaged, doing="exporting")
            skipped.extend(damaged)
        if page.after is None:
            return exported, skipped
        after = page.after


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
    skipped: Sequence[SkippedRecord] = (),
) -> str:
    """The export document: JSON with the stats, the sessions and the records skipped for
    being unreadable, or CSV of the sessions (skipped records are only logged).

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
            "skipped": [asdict(record) for record in skipped],
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


def _as_path(field: str, value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise InvalidInputError(field, value, "must be a non-empty file path")
    try:
        return Path(value).expanduser()
    except RuntimeError:  # an unknown user's home directory (``~nobody/...``)
        raise InvalidInputError(field, str(value), "names an unknown home directory") from None


def resolve_export_path(path: str | Path, directory: str | Path | None) -> Path:
    """``path`` inside ``directory`` (default: the working directory), fully resolved.

    A path that leads outside the directory (``..``, an absolute path elsewhere, a symlink
    pointing out), that names a directory, or that the file system cannot hold (a NUL byte,
    a name it cannot encode) is an InvalidInputError naming ``path`` or ``directory``.
    """
    relative = _as_path("path", path)
    here = Path.cwd() if directory is None else _as_path("directory", directory)
    # OSError, ValueError, RuntimeError: a symlink loop, a NUL byte, a name the file system
    # cannot encode.
    try:
        base = here.resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidInputError("directory", str(directory), f"is not usable ({exc})") from None
    try:
        target = (base / relative).resolve()
        is_directory = target.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidInputError("path", str(path), f"is not a usable file path ({exc})") from None
    if not target.is_relative_to(base) or target == base:
        raise InvalidInputError("path", str(path), f"must name a file inside {base}")
    if is_directory:
        raise InvalidInputError("path", str(path), "is a directory, not a file")
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
    """Write ``document`` to ``target`` (replacing it whole) off the event loop.

    A parent that is a file is an InvalidInputError naming ``path``; a file system that
    refuses the write (permissions, a full disk) is a StorageRefusedError.
    """
    try:
        await asyncio.to_thread(_write_atomically, target, document)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise InvalidInputError("path", str(target), f"cannot be a file ({exc.strerror})") from None
    except OSError as exc:
        raise StorageRefusedError("file system", f"{target}: {exc.strerror or exc}") from exc
