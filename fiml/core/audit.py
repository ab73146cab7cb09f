"""The audit trail: who did what to which session, and who was refused, one record each.

Records go to the logger ``fiml.audit`` (:data:`AUDIT_LOGGER`), a stream of their own that
an operator routes apart from the operational logs: to a file of JSON lines with
``FIML_AUDIT_LOG_FILE`` (:func:`fiml.core.logs.configure_logging`), or to a collector by
attaching a handler to that logger. Each record's event is ``audit.<action>`` and its
fields are

- ``actor``: who acted — a user of the MCP server, ``cli:<OS user>`` for the ``fiml``
  commands, ``system`` for the background jobs; ``None`` when a request had no valid token;
- ``action``: ``create``, ``extend``, ``close``, ``archive``, ``delete``, ``retention``
  (archives past the retention period deleted), ``share`` / ``unshare`` (a reader granted or
  refused a session, named in ``reader``; outcome ``had`` / ``absent`` when nothing changed),
  ``refused`` (a tool call refused) or ``auth_refused`` (a bearer token refused);
- ``session_id`` (when one session is concerned), ``outcome`` (``ok`` or ``refused``),
  ``at`` (ISO 8601, UTC), and where they apply ``tool``, ``error`` (a class name),
  ``count`` (sessions a job's run concerned) and ``reason``.

Lifecycle actions are recorded by the store (:class:`~fiml.sessions.store.SessionStore`),
so every way in — tools, commands, jobs — is on record; the actor is whoever the entry
point named with :func:`acting_as`. Like every FIML log record, an audit record never holds
a bearer token, a context value or an error's message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

__all__ = [
    "AUDIT_LOGGER",
    "SYSTEM_ACTOR",
    "acting_as",
    "audit",
    "current_actor",
    "write_audit_to",
]

AUDIT_LOGGER = "fiml.audit"
SYSTEM_ACTOR = "system"
"""The actor of what no caller asked for: cleanup, retention, metrics backfill."""

logger = logging.getLogger(AUDIT_LOGGER)
_actor: ContextVar[str | None] = ContextVar("fiml_audit_actor", default=SYSTEM_ACTOR)


def write_audit_to(path: Path) -> None:
    """Send the audit trail to ``path`` (appended, one JSON object per line) and nowhere
    else; called once per process that has ``audit_log_file`` set."""
    from fiml.core.logs import JsonFormatter

    target = str(path.expanduser().resolve())
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
            return
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Record what happens inside the block as done by ``actor``."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> str | None:
    """Who the records made now name as the actor."""
    return _actor.get()


def audit(
    action: str,
    *,
    session_id: UUID | str | None = None,
    outcome: str = "ok",
    **fields: Any,
) -> None:
    """One audit record of ``action`` by the current actor (see the module docstring)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    actor = _actor.get()
    record: dict[str, Any] = {
        "event": f"audit.{action}",
        "actor": actor,
        "action": action,
        "session_id": None if session_id is None else str(session_id),
        "outcome": outcome,
        "at": datetime.now(UTC).isoformat(),
    }
    record.update({k: v for k, v in fields.items() if v is not None})
    logger.info("%s %s %s", actor, action, outcome, extra=record)
