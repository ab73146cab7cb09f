"""The quarantine: sessions that archival could not move, and why.

A session lands here when the archive refuses it for a reason of its own (a value the
archive cannot hold) or when its stored record cannot be decoded. It stays where it was,
readable as far as it can be read; every cleanup tries it again (a session that is then
archived leaves the quarantine in the same transaction), and retention never deletes a
quarantined session: only an operator does, after reading the reason
(``fiml sessions quarantined``, then ``fiml sessions delete``).

The rows live in the archive database (``session_quarantine``), next to the archive they
are waiting for, on every deployment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.exc import DBAPIError

from fiml.sessions.db import QuarantineRow
from fiml.sessions.sql_dialects import dialect_insert

__all__ = [
    "QUARANTINE",
    "UNDECODABLE",
    "QuarantinedSession",
    "count_quarantined",
    "failure_reason",
    "list_quarantined",
    "record_quarantined",
    "release",
]

QUARANTINE = cast(Table, QuarantineRow.__table__)
_MAX_REASON_CHARS = 500
UNDECODABLE = (ValueError, KeyError, TypeError, IndexError)
"""What decoding a damaged stored record raises, on any backend (pydantic's ValidationError
and json's JSONDecodeError are ValueErrors)."""


@dataclass(frozen=True, slots=True)
class QuarantinedSession:
    """One quarantined session: whose, why, since when, and how often archival failed."""

    session_id: UUID
    user_id: str | None
    reason: str
    first_failed_at: datetime
    last_failed_at: datetime
    attempts: int


def failure_reason(exc: BaseException) -> str:
    """Why archiving failed, in one line that quotes no stored value.

    Decoding errors name where the record is broken but never its content (a context
    value must not reach a log or an operator's screen); database errors keep the server's
    own message, which names the problem, not the data.
    """
    if isinstance(exc, ValidationError):
        where = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:3]
        )
        text = f"stored record does not decode ({where})"
    elif isinstance(exc, DBAPIError):
        text = f"the archive refused it: {str(exc.orig or exc).strip()}"
    elif isinstance(exc, UNDECODABLE):
        text = f"stored record does not decode ({type(exc).__name__})"
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.replace("\x00", "\\x00").split())
    return text[:_MAX_REASON_CHARS]


def _insert(conn: Connection) -> Any:
    return dialect_insert(conn.dialect.name, QUARANTINE)


def record_quarantined(
    conn: Connection, failures: Mapping[UUID, tuple[str | None, str]], *, now: datetime
) -> None:
    """Quarantine sessions (id -> (user id, reason)); one already there counts one more
    attempt and keeps its first failure time."""
    if not failures:
        return
    rows = [
        {
            "session_id": sid,
            "user_id": user,
            "reason": reason,
            "first_failed_at": now,
            "last_failed_at": now,
            "attempts": 1,
        }
        for sid, (user, reason) in sorted(failures.items())  # id order: no deadlocks
    ]
    stmt = _insert(conn)
    stmt = stmt.on_conflict_do_update(
        index_elements=[QUARANTINE.c.session_id],
        set_={
            "reason": stmt.excluded.reason,
            "user_id": func.coalesce(stmt.excluded.user_id, QUARANTINE.c.user_id),
            "last_failed_at": stmt.excluded.last_failed_at,
            "attempts": QUARANTINE.c.attempts + 1,
        },
    )
    conn.execute(stmt, rows)


def release(conn: Connection, session_ids: Sequence[UUID]) -> None:
    """Take sessions out of the quarantine (they were archived, or deleted)."""
    if session_ids:
        conn.execute(delete(QUARANTINE).where(QUARANTINE.c.session_id.in_(session_ids)))


def list_quarantined(
    conn: Connection, *, limit: int, user_id: str | None = None
) -> list[QuarantinedSession]:
    """The quarantined sessions, longest-failing first."""
    stmt = select(QUARANTINE)
    if user_id is not None:
        stmt = stmt.where(QUARANTINE.c.user_id == user_id)
    stmt = stmt.order_by(QUARANTINE.c.first_failed_at, QUARANTINE.c.session_id).limit(limit)
    rows = conn.execute(stmt).all()
    return [
        QuarantinedSession(
            session_id=r.session_id,
            user_id=r.user_id,
            reason=r.reason,
            first_failed_at=r.first_failed_at,
            last_failed_at=r.last_failed_at,
            attempts=r.attempts,
        )
        for r in rows
    ]


def count_quarantined(conn: Connection) -> int:
    """How many sessions are quarantined."""
    return int(conn.execute(select(func.count()).select_from(QUARANTINE)).scalar_one())
