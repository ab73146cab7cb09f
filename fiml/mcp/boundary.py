"""Where FIML's errors become MCP errors: a message for the agent, never a traceback.

A :class:`~fiml.core.errors.FimlError` becomes the SDK's ``ToolError`` (an ``isError``
result carrying the message) or ``ResourceError``. Anything else is a bug: the client
gets a generic message with an incident id, and the server log gets the exception type
and stack, but not the exception's text, which may quote stored values.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from fiml.core.audit import acting_as
from fiml.core.errors import (
    ContextValueError,
    FimlError,
    InvalidSessionIdError,
    SessionNotFoundError,
)
from fiml.core.tracing import TOOL_SPAN
from fiml.core.tracing import start as start_span
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.observed import caller, tool_call_done

__all__ = ["client_message", "resource_boundary", "tool_boundary"]

logger = logging.getLogger("fiml.mcp")

P = ParamSpec("P")
R = TypeVar("R")


def client_message(error: FimlError) -> str:
    """The message to show for ``error``; context values are left out of it."""
    if isinstance(error, ContextValueError):
        # The value may be anything the agent stored; name the field and the reason only.
        return f"invalid {error.field}: {error.reason}"
    return str(error)


def _log_unexpected(where: str, exc: BaseException) -> str:
    incident = uuid.uuid4().hex[:12]
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error(
        "unexpected %s in %s (incident %s)\n%s",
        type(exc).__name__,
        where,
        incident,
        stack,
        extra={"event": "unexpected.error", "error": type(exc).__name__, "incident": incident},
    )
    return incident


def tool_boundary(
    name: str, identity: IdentityResolver | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wrap a tool so every failure reaches the client as an ``isError`` result, and every
    call is counted, logged and (with tracing on) a span once
    (:func:`~fiml.mcp.observed.tool_call_done`) for the caller ``identity`` names."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            span = start_span(TOOL_SPAN, name, {"fiml.tool": name})
            error: BaseException | None = None
            user = caller(identity)
            try:
                with acting_as(user):  # the audit trail names the caller
                    return await fn(*args, **kwargs)
            except FimlError as exc:
                error = exc
                raise ToolError(client_message(exc)) from None
            except Exception as exc:
                error = exc
                incident = _log_unexpected(f"tool {name}", exc)
                raise ToolError(f"internal error (incident {incident})") from None
            finally:
                seconds = time.perf_counter() - started
                tool_call_done(name, user, kwargs, error, seconds, span)

        return run

    return decorate


def resource_boundary(
    name: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wrap a resource reader: unknown or foreign sessions read as not found."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def read(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except (SessionNotFoundError, InvalidSessionIdError) as exc:
                raise ResourceNotFoundError(client_message(exc)) from None
            except FimlError as exc:
                raise ResourceError(client_message(exc)) from None
            except Exception as exc:
                incident = _log_unexpected(f"resource {name}", exc)
                raise ResourceError(f"internal error (incident {incident})") from None

        return read

    return decorate
