"""The light half of :mod:`fiml.mcp.subscriptions`, which the server module imports before
the store is open (:mod:`fiml.mcp.start_gate`): the listen streams' bus and the
``initialize`` capability, on the SDK alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent
from mcp.types import InitializeResult

__all__ = ["ListenBus", "SubscribeCapability", "listener_of", "listening_as"]

_LISTENING: ContextVar[object | None] = ContextVar("fiml_listening", default=None)
"""The listen stream whose handler runs in this context, set around the SDK's handler."""

_LISTENERS: dict[object, Callable[[ServerEvent], None]] = {}
"""Each listen stream's SDK listener, as the SDK's handler subscribed it to the bus."""


class ListenBus(InMemorySubscriptionBus):
    """The SDK's in-process bus, except that a session's update goes only to the streams
    FIML let subscribe to it (the :class:`SessionWatch` delivers it to each, after the
    access check), never to every stream whose filter names its URI."""

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register ``listener``: with every event but a resource update, and (when a
        FIML-checked listen stream is subscribing) as that stream's delivery."""
        stream = _LISTENING.get()
        if stream is not None:
            _LISTENERS[stream] = listener

        def other_events(event: ServerEvent) -> None:
            if not isinstance(event, ResourceUpdated):
                listener(event)

        unsubscribe = super().subscribe(other_events)

        def both() -> None:
            unsubscribe()
            if stream is not None:
                _LISTENERS.pop(stream, None)

        return both


class SubscribeCapability:
    """A server middleware: the ``initialize`` answer says ``resources.subscribe``."""

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "initialize":
            return result
        if isinstance(result, InitializeResult):
            result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if isinstance(result, dict):
            resources = result.get("capabilities", {}).get("resources")
            if isinstance(resources, dict):
                resources["subscribe"] = True
        return result


@contextmanager
def listening_as(stream: object) -> Iterator[None]:
    """While the block runs, a listener the SDK subscribes to the bus is ``stream``'s."""
    token = _LISTENING.set(stream)
    try:
        yield
    finally:
        _LISTENING.reset(token)


def listener_of(stream: object) -> Callable[[ServerEvent], None] | None:
    """The SDK's listener of ``stream``, while its listen handler runs."""
    return _LISTENERS.get(stream)
