"""Fair share of the HTTP server: no user can starve the others.

:class:`FairShare` is an ASGI middleware around the app the MCP SDK builds
(``MCPServer.streamable_http_app``). For each user it holds three limits
(:class:`FairShareLimits`, from the ``http_*`` settings):

- **open transport sessions** (stateful mode): an ``initialize`` answered with an
  ``mcp-session-id`` header opens one; a DELETE of it, a 404 for it (the SDK has reaped
  it) or ``session_idle_seconds`` without a request (the SDK's own idle expiry, with the
  same value) closes it. Requests that may open one count while they are in flight, so
  200 concurrent ``initialize`` requests cannot all slip past the cap;
- **requests in flight** (every method but GET, whose server-sent event stream stays
  open for a session's life);
- **requests per minute**, a token bucket that refills continuously: a burst of a
  minute's worth, then an even rate.

Past a limit the request gets 429 with ``Retry-After`` and never reaches the SDK; refused
requests do not use up the rate. The SDK's own cap on transport sessions is shared by all
users, so the settings keep a user's cap at most a tenth of it: only many users together
can fill it.

The user is the one the request's bearer token names, asked of the same verifier the SDK
authenticates with; the answer is kept for :data:`IDENTITY_CACHE_SECONDS`, so a call
costs a dict lookup. A request without a token, or with one the verifier refuses, passes
through untouched: the SDK answers it 401.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcp.server.auth.provider import TokenVerifier

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from fiml.core.config import Settings

__all__ = ["IDENTITY_CACHE_SECONDS", "FairShare", "FairShareLimits"]

IDENTITY_CACHE_SECONDS = 5.0
"""How long a token's user is remembered; a revoked token is refused by the SDK at once,
only its share is still counted to the user it named for this long."""
_IDENTITY_CACHE_ENTRIES = 10_000
"""Past this many remembered tokens the memory starts over, so random tokens cannot grow it."""
_SESSION_HEADER = b"mcp-session-id"


@dataclass(frozen=True, slots=True)
class FairShareLimits:
    """Each user's share of the HTTP server."""

    sessions_per_user: int
    in_flight_per_user: int
    requests_per_minute: int
    session_idle_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> FairShareLimits:
        """The limits the ``http_*`` settings give."""
        return cls(
            sessions_per_user=settings.http_sessions_per_user,
            in_flight_per_user=settings.http_in_flight_per_user,
            requests_per_minute=settings.http_requests_per_minute_per_user,
            session_idle_seconds=settings.http_session_idle_seconds,
        )


@dataclass(slots=True)
class _Share:
    """What one user holds right now."""

    sessions: dict[str, float] = field(default_factory=dict)
    """Open transport session id -> when a request last used it (monotonic seconds)."""
    opening: int = 0
    in_flight: int = 0
    bucket: float = 0.0
    refilled: float = 0.0


@dataclass(frozen=True, slots=True)
class _Refusal:
    limit: str
    setting: str
    retry_after: int


class FairShare:
    """ASGI middleware: each user's requests within their :class:`FairShareLimits`."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier,
        limits: FairShareLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.limits = limits
        self.clock = clock
        self._users: dict[str, _Share] = {}
        self._identities: dict[str, tuple[str | None, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        user = await self._user(headers.get(b"authorization"))
        if user is None:
            await self.app(scope, receive, send)
            return
        share = self._users.get(user)
        if share is None:
            share = self._users[user] = _Share(
                bucket=float(self.limits.requests_per_minute), refilled=self.clock()
            )
        method: str = scope["method"]
        raw_session = headers.get(_SESSION_HEADER)
        session_id = raw_session.decode("latin-1") if raw_session is not None else None
        opening = method == "POST" and session_id is None
        counted = method != "GET"
        refusal = self._admit(share, opening=opening, counted=counted)
        if refusal is not None:
            await _too_many(send, refusal)
            return
        share.bucket -= 1
        share.opening += opening
        share.in_flight += counted
        if session_id is not None and session_id in share.sessions:
            share.sessions[session_id] = self.clock()

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._follow_session(share, message, method, session_id, opening=opening)
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            share.opening -= opening
            share.in_flight -= counted
            if session_id is not None and session_id in share.sessions:
                share.sessions[session_id] = self.clock()

    async def _user(self, authorization: bytes | None) -> str | None:
        if authorization is None:
            return None
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        now = self.clock()
        known = self._identities.get(token)
        if known is not None and known[1] > now:
            return known[0]
        access = await self.verifier.verify_token(token)
        user = None if access is None else (access.subject or access.client_id)
        if len(self._identities) >= _IDENTITY_CACHE_ENTRIES:
            self._identities.clear()
        self._identities[token] = (user, now + IDENTITY_CACHE_SECONDS)
        return user

    def _admit(self, share: _Share, *, opening: bool, counted: bool) -> _Refusal | None:
        limits = self.limits
        now = self.clock()
        rate = limits.requests_per_minute / 60.0
        share.bucket = min(
            float(limits.requests_per_minute), share.bucket + (now - share.refilled) * rate
        )
        share.refilled = now
        if share.bucket < 1:
            wait = math.ceil((1 - share.bucket) / rate)
            return _Refusal("requests per minute", "http_requests_per_minute_per_user", wait)
        if counted and share.in_flight >= limits.in_flight_per_user:
            return _Refusal("requests in flight", "http_in_flight_per_user", 1)
        if opening and len(share.sessions) + share.opening >= limits.sessions_per_user:
            idle = limits.session_idle_seconds
            for sid, last in list(share.sessions.items()):
                if now - last >= idle:
                    del share.sessions[sid]
            if len(share.sessions) + share.opening >= limits.sessions_per_user:
                oldest = min(share.sessions.values(), default=now)
                wait = max(1, math.ceil(oldest + idle - now))
                return _Refusal("open transport sessions", "http_sessions_per_user", wait)
        return None

    def _follow_session(
        self,
        share: _Share,
        message: Message,
        method: str,
        session_id: str | None,
        *,
        opening: bool,
    ) -> None:
        status: int = message["status"]
        if opening:
            if status < 300:
                for name, value in message.get("headers", ()):
                    if name.lower() == _SESSION_HEADER:
                        share.sessions[value.decode("latin-1")] = self.clock()
            return
        if session_id is None or session_id not in share.sessions:
            return
        if status == 404 or (method == "DELETE" and status < 300):
            del share.sessions[session_id]


async def _too_many(send: Send, refusal: _Refusal) -> None:
    message = (
        f"too many {refusal.limit} for this user (setting {refusal.setting}); "
        f"retry after {refusal.retry_after} s"
    )
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(refusal.retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
