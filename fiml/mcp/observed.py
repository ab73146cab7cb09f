"""What an operator learns of each tool call: one metric sample, one log record, and
with tracing on the end of its span (:mod:`fiml.core.tracing`).

:func:`tool_call_done` runs once per call, from the tool boundary
(:func:`fiml.mcp.boundary.tool_boundary`), after the answer or the failure is known. The
outcome (:func:`fiml.core.metrics.outcome_of`) is one of:

- ``ok``: answered;
- ``refused``: a :class:`~fiml.core.errors.FimlError` the caller can act on (bad input, an
  unknown or finished session, a missing permission, a symbol no provider knows), logged
  at INFO as ``tool.refused``;
- ``storage_error``: Redis or the database failed the call
  (:class:`~fiml.core.errors.StorageError`), logged at ERROR as ``storage.unavailable``
  (``storage.refused`` when the service is up but refused the write);
- ``internal``: a bug; the boundary logs it at ERROR with its stack (``unexpected.error``).

The record names the user, the tool, the session (only when the argument is a session id),
the outcome, the duration and an error's class, never its message: a message may quote a
value the caller sent, and a context value must not reach a log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from fiml.core.audit import acting_as, audit
from fiml.core.errors import FimlError, StorageError, StorageRefusedError
from fiml.core.logs import CALLS_LOGGER
from fiml.core.metrics import outcome_of, recorder
from fiml.core.tracing import OpenSpan
from fiml.mcp.auth import IdentityResolver

__all__ = ["caller", "tool_call_done"]

logger = logging.getLogger(CALLS_LOGGER)


def caller(identity: IdentityResolver | None) -> str | None:
    """The verified caller's user id; None when there is none (the call is refused)."""
    if identity is None:
        return None
    try:
        return identity.current().user_id
    except FimlError:  # no verified caller: the call was refused for that
        return None


def _session(arguments: Mapping[str, Any]) -> str | None:
    """The call's session id, only if it is one: anything else a caller sent stays out."""
    value = arguments.get("session_id")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and len(value) == 36:
        try:
            return str(UUID(value))
        except ValueError:
            return None
    return None


def tool_call_done(
    tool: str,
    user: str | None,
    arguments: Mapping[str, Any],
    error: BaseException | None,
    seconds: float,
    span: OpenSpan | None = None,
) -> None:
    """Count the call, log its record and end its ``span`` (see the module docstring);
    ``user`` is the verified caller (:func:`caller`), None when there was none."""
    outcome = outcome_of(error)
    if span is not None:
        span.end(error, outcome, {"fiml.user_id": user, "fiml.session_id": _session(arguments)})
    metrics = recorder()
    if metrics.enabled:
        metrics.tool_call(tool, outcome, seconds)
        if error is not None:
            metrics.error(type(error).__name__)
    if outcome == "refused":
        with acting_as(user):
            audit(
                "refused",
                session_id=_session(arguments),
                outcome="refused",
                tool=tool,
                error=type(error).__name__,
            )
    if outcome == "internal":
        return  # the boundary has logged it, with its stack
    level = logging.ERROR if outcome == "storage_error" else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "event": "tool.call",
        "tool": tool,
        "user": user,
        "session_id": _session(arguments),
        "outcome": outcome,
        "duration_ms": round(seconds * 1000, 3),
    }
    if error is not None:
        fields["error"] = type(error).__name__
        if isinstance(error, StorageError):
            refused = isinstance(error, StorageRefusedError)
            fields["event"] = "storage.refused" if refused else "storage.unavailable"
            fields["backend"] = error.backend
        else:
            fields["event"] = "tool.refused"
    logger.log(level, "%s %s", tool, outcome, extra=fields)
