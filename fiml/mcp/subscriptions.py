"""Resource subscriptions: a subscriber of a session is told when it changes.

Two protocols, one :class:`~fiml.mcp.session_watch.SessionWatch`:

- 2026-07-28 clients open a ``subscriptions/listen`` stream naming ``session://`` URIs. The
  SDK's own handler serves the stream, and would honour any URI for anyone; so
  :class:`SessionSubscriptions`, a server middleware, checks each URI first (a session the
  caller may not read is refused exactly as an unknown one, as ``resources/read`` refuses
  it) and keeps the stream's subscriptions for as long as the handler runs. The SDK's
  public fan-out seam, a ``SubscriptionBus`` (:class:`~fiml.mcp.listen_bus.ListenBus`, given to
  ``MCPServer(subscriptions=...)``), hands FIML that stream's listener, so a session's
  update reaches only the streams allowed to read it, never every stream naming its URI.
- 2025 clients (``initialize``) send ``resources/subscribe`` / ``resources/unsubscribe``,
  which the SDK's ``MCPServer`` does not serve: the middleware answers them, and tells the
  connection with ``notifications/resources/updated``.
  :class:`~fiml.mcp.listen_bus.SubscribeCapability`
  advertises ``resources.subscribe`` in the ``initialize`` answer; it is a middleware of
  its own because over stdio the handshake is answered before the store is open
  (:mod:`fiml.mcp.start_gate`). Over stateless HTTP no connection outlives a request,
  so neither is offered: the capability stays false and ``resources/subscribe`` is an
  unknown method.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, EmptyResult

from fiml.core.errors import FimlError, InvalidSessionIdError, SessionNotFoundError
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import client_message
from fiml.mcp.listen_bus import listener_of, listening_as
from fiml.mcp.session_watch import NotListeningYet, SessionWatch, Subscriber
from fiml.sessions.identifiers import parse_session_id

__all__ = ["SessionSubscriptions"]

SESSION_SCHEME = "session://"


def _session_id(uri: object) -> UUID:
    """The session a ``session://`` URI names; MCPError for any other URI, as for a read."""
    if not isinstance(uri, str) or not uri.startswith(SESSION_SCHEME):
        raise MCPError(INVALID_PARAMS, f"Unknown resource: {uri}", data={"uri": str(uri)})
    return parse_session_id(uri.removeprefix(SESSION_SCHEME))


def _refused(exc: FimlError, uri: object) -> MCPError:
    """The error ``resources/read`` gives for the same URI: unknown and foreign sessions
    alike are ``-32602`` with the not-found message."""
    return MCPError(INVALID_PARAMS, client_message(exc), data={"uri": str(uri)})


class SessionSubscriptions:
    """A server middleware: answers ``resources/subscribe`` and ``resources/unsubscribe``
    (with ``legacy``), checks ``subscriptions/listen`` URIs, and pokes the watch after a
    tool call on a watched session."""

    def __init__(self, watch: SessionWatch, identity: IdentityResolver, *, legacy: bool) -> None:
        self.watch = watch
        self.identity = identity
        self.legacy = legacy
        # Per 2025 connection and user; a connection is known by its initialize params,
        # the one object the SDK keeps per connection and shows on every request.
        self._connections: dict[tuple[int, str], tuple[object, Subscriber]] = {}

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        method = ctx.method
        if ctx.request_id is None:
            return await call_next(ctx)
        if method == "subscriptions/listen":
            return await self._listen(ctx, call_next)
        if self.legacy and method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._legacy(ctx, subscribe=method == "resources/subscribe")
        result = await call_next(ctx)
        if method == "tools/call":
            arguments = (ctx.params or {}).get("arguments")
            if isinstance(arguments, dict):
                self._poke(arguments.get("session_id"))
        return result

    def _poke(self, session_id: object) -> None:
        if isinstance(session_id, str):
            with contextlib.suppress(InvalidSessionIdError):  # no session: nothing to poke
                self.watch.poke(parse_session_id(session_id))

    async def _listen(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        notifications = (ctx.params or {}).get("notifications")
        uris = (
            notifications.get("resourceSubscriptions") if isinstance(notifications, dict) else None
        )
        if not uris or not isinstance(uris, list):
            return await call_next(ctx)

        async def send(uri: str) -> None:
            listener = listener_of(stream)
            if listener is None:  # checked, but the SDK has not registered it yet
                raise NotListeningYet(uri)
            listener(ResourceUpdated(uri=uri))

        stream = Subscriber(self.identity.current().user_id, send)
        try:
            for uri in uris:
                await self._subscribe(stream, uri, field="resourceSubscriptions")
            with listening_as(stream):
                return await call_next(ctx)  # the stream, until the client leaves
        finally:
            self.watch.drop(stream)

    async def _subscribe(self, subscriber: Subscriber, uri: object, *, field: str) -> None:
        try:
            await self.watch.subscribe(subscriber, _session_id(uri), field=field)
        except (SessionNotFoundError, InvalidSessionIdError) as exc:
            raise _refused(exc, uri) from None
        except FimlError as exc:
            raise MCPError(INVALID_PARAMS, client_message(exc)) from None

    async def _legacy(self, ctx: ServerRequestContext[Any, Any], *, subscribe: bool) -> EmptyResult:
        uri = (ctx.params or {}).get("uri")
        subscriber = self._connection(ctx.session)
        if subscribe:
            await self._subscribe(subscriber, uri, field="uri")
            return EmptyResult()
        with contextlib.suppress(InvalidSessionIdError):  # never subscribed: nothing changes
            self.watch.unsubscribe(subscriber, _session_id(uri))
        return EmptyResult()

    def _connection(self, session: ServerSession) -> Subscriber:
        user = self.identity.current().user_id
        params = session.client_params
        if params is None:  # no initialize seen: nothing to know the connection by
            raise MCPError(INVALID_REQUEST, "resources/subscribe needs an initialized connection")
        key = (id(params), user)
        known = self._connections.get(key)
        if known is not None and known[0] is params:
            return known[1]

        async def alive() -> bool:
            await session.send_ping()
            return True

        subscriber = Subscriber(user, session.send_resource_updated, alive)
        # Connections the watch has dropped (gone, or nothing subscribed) are forgotten;
        # holding ``params`` keeps its id from being reused by another connection meanwhile.
        self._connections = {k: v for k, v in self._connections.items() if self.watch.has(v[1])}
        self._connections[key] = (params, subscriber)
        return subscriber
