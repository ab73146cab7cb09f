"""Listing entries (``SessionSummary``) from stored values, the same way on every backend.

A backend reads the ``fields.SUMMARY_FIELDS`` of each session it lists (a SQL row, a Redis
meta hash), decodes them, and hands them here by field name. A session whose values
cannot be decoded or validated is left out of the listing and logged, so one damaged
session never hides its owner's others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from fiml.sessions.backends.fields import SUMMARY_FIELDS
from fiml.sessions.models import SessionStatus, SessionSummary
from fiml.sessions.quarantine import failure_reason

__all__ = ["skip_corrupt", "summaries_from_values"]

logger = logging.getLogger("fiml.sessions.listing")
_SUMMARIES = TypeAdapter(list[SessionSummary])
_SUMMARY = TypeAdapter(SessionSummary)


def skip_corrupt(session_id: Any, exc: BaseException) -> None:
    """Log a session a listing leaves out because its stored values are damaged."""
    logger.warning(
        "listing skips a corrupt session",
        extra={
            "event": "session.corrupt",
            "session_id": str(session_id),
            "reason": failure_reason(exc),
        },
    )


def _status(values: Mapping[str, Any], expired: bool) -> SessionStatus:
    if values["archived_at"] is not None:
        return SessionStatus.ARCHIVED
    if values["closed_at"] is not None:
        return SessionStatus.CLOSED
    return SessionStatus.EXPIRED if expired else SessionStatus.ACTIVE


def _summary_fields(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A ``SessionSummary``'s fields: each stored one under its name in a ``Session`` (the
    last step of its path: ``type``, ``total_queries``)."""
    entry = {field.path[-1]: values[field.name] for field in SUMMARY_FIELDS}
    entry["tags"] = entry["tags"] or []
    expired = entry["expires_at"] <= now
    entry.update(
        status=_status(values, expired),
        is_expired=expired,
        is_archived=values["archived_at"] is not None,
    )
    return entry


def summaries_from_values(rows: Iterable[Mapping[str, Any]], now: datetime) -> list[SessionSummary]:
    """Listing entries from each session's decoded ``SUMMARY_FIELDS`` by name, validated
    in one pydantic-core call; should that fail, entry by entry, leaving out (and logging)
    the damaged ones."""
    entries = [_summary_fields(row, now) for row in rows]
    try:
        return _SUMMARIES.validate_python(entries)
    except ValueError:
        pass
    summaries = []
    for entry in entries:
        try:
            summaries.append(_SUMMARY.validate_python(entry))
        except ValueError as exc:
            skip_corrupt(entry["id"], exc)
    return summaries
