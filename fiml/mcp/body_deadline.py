"""Slow request bodies cut off: a request's whole body must arrive within a deadline.

uvicorn closes a connection idle between requests after its keep-alive timeout and caps
open connections (``limit_concurrency``), but never times out a request body: a client
sending one a byte at a time holds its connection and a task for as long as it likes.
:class:`BodyDeadline` wraps the ASGI app and gives each request ``seconds`` from its
arrival to deliver the whole body. Past that, the app is told the client disconnected,
and the client gets 408 with ``Connection: close``, on which uvicorn closes the socket. A
request answered before its body was read (401, 429) is answered with ``Connection: close``
too, since uvicorn would otherwise keep reading the unread body.

Reading the request line and headers happens in uvicorn before any ASGI app runs, so no
ASGI middleware can time it out: :mod:`fiml.mcp.head_deadline` does, in front of uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyDeadline"]

_TIMED_OUT = b'{"error": "request body not received in time"}'


class BodyDeadline:
    """ASGI middleware: 408 and a closed connection for a body slower than ``seconds``."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.seconds
        body_done = not _has_body(scope)
        timed_out = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                # Past the body, receive() only waits for the client to go: no deadline.
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message
            timed_out = True
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out and not started:
                return  # the answer is the 408 below
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    # Answered before its body was read (a 401, a 429): uvicorn would go on
                    # reading that body for as long as it dribbles in, so the connection ends.
                    headers = [*message.get("headers", ()), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, timed_receive, guarded_send)
        if timed_out and not started:
            await send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_TIMED_OUT)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _TIMED_OUT})


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
