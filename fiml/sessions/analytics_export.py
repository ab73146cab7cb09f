"""Exporting recorded session facts as JSON or CSV, and writing exports safely to disk.

The rows come from the archive (:mod:`fiml.sessions.metrics_rows` reads them a page at a
time, each decoded on its own): a record that cannot be read is left out, logged, and
listed in the JSON document's ``skipped``; the others are exported.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from fiml.core.errors import InvalidInputError, StorageRefusedError
from fiml.sessions.metrics import MetricFilters
from fiml.sessions.row_decoding import SkippedRecord

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "FORMULA_TRIGGERS",
    "neutralized",
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


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""


def neutralized(text: str) -> str:
    """``text`` as a spreadsheet shows it literally: a cell that would start a formula gets a
    leading ``'`` (OWASP's advice), which spreadsheets hide and never evaluate."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _csv_cell(value: Any) -> Any:
    # Lists are joined first: it is the cell's first character that a spreadsheet judges.
    if isinstance(value, list):
        value = ";".join(value)
    elif isinstance(value, dict):
        value = ";".join(f"{k}:{v}" for k, v in value.items())
    elif value is None:
        return ""
    return neutralized(value) if isinstance(value, str) else value


def render_export(
    format: str,
    filters: MetricFilters,
    stats: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    skipped: Sequence[SkippedRecord] = (),
    *,
    generated_at: datetime,
) -> str:
    """The export document: JSON with the stats, the sessions and the records skipped for
    being unreadable, or CSV of the sessions (skipped records are only logged).

    In CSV, lists are joined with ``;`` and query types are written ``type:count``; a text
    cell that a spreadsheet would read as a formula is :func:`neutralized`. JSON is written
    as stored.
    """
    if format == "json":
        document = {
            "generated_at": generated_at.isoformat(),
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
        # RFC 4180 line ends: with CR in the terminator, a cell holding a CR is quoted too.
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
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
