"""Answering ``initialize`` while the rest of the server starts.

A stdio client starts ``fiml serve`` and waits for the answer to its ``initialize``; most of
a start is importing and opening what the tools use (the session store and SQLAlchemy,
Redis, the market-data clients), which ``initialize`` does not need. So ``serve`` answers
the handshake on a server that has no tools yet and starts the rest beside it
(:func:`serve_while_starting`); every other request waits for the :class:`StartGate`,
middleware of the SDK's (``MCPServer(middleware=...)``), to open, so a ``tools/list`` or a
tool call sent right after the handshake is answered once the tools are there, as if the
start had been finished first.

What remains before the handshake is the MCP SDK's own import (0.6-1.0 s of CPU here,
benchmarks/RESULTS.md): the SDK's package imports its client and every protocol version's
types with it, which only lazy imports in the SDK itself could spare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

__all__ = ["HANDSHAKE_METHODS", "StartGate", "serve_while_starting"]

HANDSHAKE_METHODS = frozenset({"initialize", "server/discover", "ping"})
"""Requests answered before the start has finished: the handshake of the protocol's dated
versions (``initialize``) and of the stateless ones (``server/discover``), whose answers
the server's capabilities make without its tools, and ``ping``. Notifications are never
held."""


class StartGate:
    """SDK middleware that holds every request but the handshake until :meth:`open`."""

    def __init__(self) -> None:
        self._opened = anyio.Event()
        self._then: list[ServerMiddleware[Any]] = []

    @property
    def is_open(self) -> bool:
        """True once the server has everything its requests need."""
        return self._opened.is_set()

    def then(self, middleware: Sequence[ServerMiddleware[Any]]) -> None:
        """Middleware that needs what the start opens (the store), run after the gate, in
        order: the server was built, with its middleware, before the start began."""
        self._then = list(middleware)

    def open(self) -> None:
        """Let the held requests and every later one through."""
        self._opened.set()

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        # Once open, no wait at all: anyio's wait on a set event still yields to the loop,
        # a scheduling round per request for nothing.
        if not self._opened.is_set() and not _never_held(ctx.method):
            await self._opened.wait()
        return await _chain(self._then, ctx, call_next)


async def _chain(
    middleware: Sequence[ServerMiddleware[Any]],
    ctx: ServerRequestContext[Any, Any],
    call_next: CallNext,
) -> HandlerResult:
    """``middleware`` in order, each calling the next, the last ``call_next``."""
    if not middleware:
        return await call_next(ctx)
    first, rest = middleware[0], middleware[1:]

    async def next_one(inner: ServerRequestContext[Any, Any]) -> HandlerResult:
        return await _chain(rest, inner, call_next)

    return await first(ctx, next_one)


def _never_held(method: str) -> bool:
    return method in HANDSHAKE_METHODS or method.startswith("notifications/")


async def serve_while_starting(
    serve: Callable[[], Awaitable[None]],
    start: Callable[[], AbstractAsyncContextManager[object]],
    gate: StartGate,
) -> None:
    """Run ``serve()`` at once and, beside it, enter ``start()``; open ``gate`` once it is
    entered, and leave it (closing what it opened) when ``serve()`` returns.

    A start that fails ends serving and its error is raised, as it would have been had the
    start come first; so is one that fails after the client has gone (it still runs to the
    end: a broken configuration is reported even to a client that only initialized). A
    failure of ``serve()`` is raised once ``start()`` has been left.
    """
    served = anyio.Event()
    serve_failures: list[Exception] = []
    start_failure: Exception | None = None

    async def serving() -> None:
        try:
            await serve()
        except Exception as exc:  # raised below, after the start's block is left cleanly
            serve_failures.append(exc)
        finally:
            served.set()

    async with anyio.create_task_group() as group:
        group.start_soon(serving)
        try:
            async with start():
                gate.open()
                await served.wait()
        except Exception as exc:
            start_failure = exc
            group.cancel_scope.cancel()  # nothing can be served: stop reading requests
    if start_failure is not None:
        raise start_failure
    if serve_failures:
        raise serve_failures[0]
