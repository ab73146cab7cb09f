"""Slow request heads cut off: a front that reads each request head against a deadline.

uvicorn reads a request line and its headers before any ASGI app runs and puts no deadline
on it, so a client sending a head a byte a second holds a connection for as long as it
likes (:mod:`fiml.mcp.body_deadline` covers bodies, not heads). :class:`HeadDeadline`
listens on the public address instead and serves each connection itself until a head is
complete; uvicorn serves a Unix socket in a directory only this process may open.

Per connection:

- Past ``max_connections`` open at once, a new connection gets 503 and is closed before
  anything of it is read.
- Its first head must be complete within ``seconds`` of the connection's arrival, or the
  client gets 408 and the connection is closed. A later head on the same (keep-alive)
  connection must be complete within ``seconds`` of its first byte, or the connection is
  closed without an answer: one now could be read as the answer to an earlier request. The
  wait for that first byte is uvicorn's keep-alive timeout, which closes its side.
- A complete head goes to uvicorn with the client's address in ``X-Forwarded-For`` (any
  copy the client sent, and ``X-Forwarded-Proto``, are dropped; uvicorn trusts the header
  only on that private socket), then the body as its ``Content-Length`` declares, through
  uvicorn's body deadline. ``Upgrade`` is dropped (FIML serves no WebSocket), so every byte
  a client sends is either a head or a body the front can delimit. A chunked body is passed
  on as it comes with ``Connection: close`` added, since the front does not parse chunks:
  no untimed head can follow it on that connection.
- Everything uvicorn sends passes back unchanged.

A head that cannot be delimited safely (both ``Content-Length`` and ``Transfer-Encoding``,
differing lengths, a folded header) gets 400; one over :data:`HEAD_LIMIT` bytes gets 431.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fiml.core.errors import ConfigurationError

if TYPE_CHECKING:
    import uvicorn

    from fiml.core.config import Settings

__all__ = ["HEAD_LIMIT", "HeadDeadline"]

HEAD_LIMIT = 64 * 1024
"""The most bytes a request head may have (uvicorn's h11 parser allows 16 KiB)."""
LINGER_SECONDS = 1.0
"""After a refusal, how long the client's unread bytes are drained, so that closing with
them unread does not reset the connection before the client has read the answer."""
_CHUNK = 64 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_DROPPED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"upgrade"})

logger = logging.getLogger(__name__)


class _Refused(Exception):
    """A head the front answers itself, with ``status`` and a closed connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
_MESSAGES = {
    400: b'{"error": "malformed request head"}',
    408: b'{"error": "request head not received in time"}',
    431: b'{"error": "request head too large"}',
    503: b'{"error": "too many open connections"}',
}


def _answer(status: int) -> bytes:
    body = _MESSAGES[status]
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
    )


class _Head:
    """One complete request head, rewritten for uvicorn, and how its body is delimited."""

    def __init__(self, raw: bytes, client: str) -> None:
        lines = raw.split(b"\n")
        kept = [lines[0].rstrip(b"\r")]
        lengths: set[bytes] = set()
        chunked = False
        for line in lines[1:]:
            line = line.rstrip(b"\r")
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise _Refused(400)  # no name, space before the colon, or obs-fold
            lowered = name.lower()
            if lowered in _DROPPED:
                continue
            if lowered == b"content-length":
                lengths.add(value.strip())
            elif lowered == b"transfer-encoding":
                chunked = True
            kept.append(line)
        if len(lengths) > 1 or (lengths and chunked):
            raise _Refused(400)  # ambiguous framing: the way requests are smuggled
        length = lengths.pop() if lengths else b"0"
        if not length.isdigit():
            raise _Refused(400)
        if chunked:
            kept = [line for line in kept if not line.lower().startswith(b"connection:")]
            kept.append(b"connection: close")
        kept.append(b"x-forwarded-for: " + client.encode("latin-1"))
        self.data = b"\r\n".join(kept) + b"\r\n\r\n"
        self.body_length = int(length)
        self.chunked = chunked


class HeadDeadline:
    """The public listener: heads within ``seconds``, at most ``max_connections`` open."""

    def __init__(self, seconds: float, max_connections: int) -> None:
        self.seconds = seconds
        self.max_connections = max_connections
        self.open_connections = 0
        self._upstream: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadDeadline:
        return cls(settings.http_header_timeout_seconds, settings.http_max_connections)

    async def serve(self, config: Callable[..., uvicorn.Config], *, host: str, port: int) -> None:
        """Listen on ``host``:``port`` and run uvicorn behind, with ``config(uds=...,
        forwarded_allow_ips=...)`` as its configuration, until uvicorn stops."""
        import uvicorn

        directory = Path(tempfile.mkdtemp(prefix="fiml-http-"))  # 0700: this user only
        terminated = False
        try:
            self._upstream = str(directory / "uvicorn.sock")
            # Only the front can reach the socket, so its X-Forwarded-For is trusted.
            server = uvicorn.Server(config(uds=self._upstream, forwarded_allow_ips="*"))
            try:
                front = await asyncio.start_server(
                    self._connection, host, port, limit=_CHUNK, backlog=2048
                )
            except OSError as exc:
                raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from exc
            logger.info(
                "FIML HTTP on %s:%d: request heads within %g s, at most %d connections",
                host,
                port,
                self.seconds,
                self.max_connections,
            )
            try:
                with _sigterm_raised():
                    await server.serve()
            except _Terminated:
                terminated = True
            finally:
                front.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if terminated:
            signal.raise_signal(signal.SIGTERM)  # under the handler from before, as uvicorn would

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            await _refuse(reader, writer, 503)
            return
        self.open_connections += 1
        try:
            await self._relay(reader, writer)
        except (ConnectionError, OSError):
            pass  # the client or uvicorn went away: nothing more to do for either
        finally:
            self.open_connections -= 1
            await _close(writer)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _client_address(writer)
        buffer = bytearray()
        try:
            async with asyncio.timeout(self.seconds):
                head = await _read_head(reader, buffer, client)
        except TimeoutError:
            await _refuse(reader, writer, 408)
            return
        except _Refused as refused:
            await _refuse(reader, writer, refused.status)
            return
        if head is None:
            return
        assert self._upstream is not None
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self._upstream, limit=_CHUNK)
        except OSError:
            # uvicorn is not listening yet (before its "running on" line) or any more.
            await _refuse(reader, writer, 503)
            return
        requests = asyncio.create_task(self._requests(reader, buffer, head, up_writer, client))
        # A later head too slow or malformed ends the connection: the replies stop too.
        requests.add_done_callback(lambda task: _abort_on_failure(task, up_writer))
        try:
            await _pipe(up_reader, writer)  # uvicorn's bytes, until it closes its side
        finally:
            requests.cancel()
            await asyncio.gather(requests, return_exceptions=True)
            up_writer.transport.abort()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        buffer: bytearray,
        head: _Head,
        upstream: asyncio.StreamWriter,
        client: str,
    ) -> None:
        """Pass heads and bodies on to uvicorn until the client ends (returns) or a later
        head is too slow or malformed (raises)."""
        current: _Head | None = head
        while current is not None:
            if current.chunked:
                upstream.write(current.data + buffer)
                await upstream.drain()
                await _pipe(reader, upstream)
                break
            await _pass_body(reader, buffer, current, upstream)
            await upstream.drain()
            if not buffer:
                first = await reader.read(_CHUNK)
                if not first:
                    break
                buffer += first
            try:
                async with asyncio.timeout(self.seconds):
                    current = await _read_head(reader, buffer, client)
            except (TimeoutError, _Refused) as exc:
                raise ConnectionAbortedError("a later request head was too slow") from exc
        # The client has finished sending: uvicorn sees the end, and answers what it has.
        upstream.write_eof()


def _abort_on_failure(task: asyncio.Task[None], upstream: asyncio.StreamWriter) -> None:
    if not task.cancelled() and task.exception() is not None:
        upstream.transport.abort()


async def _read_head(reader: asyncio.StreamReader, buffer: bytearray, client: str) -> _Head | None:
    """The next head, taken off the front of ``buffer`` (read into as needed); None if the
    client closed before starting one."""
    scanned = 0  # where the search for the head's end resumes: each byte is searched once
    while True:
        while not scanned and buffer and buffer[0] in b"\r\n":
            del buffer[:1]  # blank lines before a request line are to be ignored (RFC 9112)
        end = _HEAD_END.search(buffer, scanned)
        if end is not None and end.start() <= HEAD_LIMIT:
            raw = bytes(buffer[: end.start()])
            del buffer[: end.end()]
            return _Head(raw, client)
        if end is not None or len(buffer) > HEAD_LIMIT:
            raise _Refused(431)
        scanned = max(0, len(buffer) - 3)  # an end may straddle what came next
        data = await reader.read(_CHUNK)
        if not data:
            if buffer:
                raise _Refused(400)
            return None
        buffer += data


async def _pass_body(
    reader: asyncio.StreamReader, buffer: bytearray, head: _Head, upstream: asyncio.StreamWriter
) -> None:
    """Pass ``head`` on, then its body; what of the body has come already goes in the same
    write, so uvicorn usually gets a whole small request at once."""
    # Bytes arrive as they come; uvicorn's body deadline (BodyDeadline) times a slow body.
    taken = min(head.body_length, len(buffer))
    upstream.write(head.data + buffer[:taken])
    del buffer[:taken]
    remaining = head.body_length - taken
    while remaining:
        data = await reader.read(min(remaining, _CHUNK))
        if not data:
            raise ConnectionAbortedError("the client left in the middle of a body")
        upstream.write(data)
        remaining -= len(data)
        await upstream.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(_CHUNK):
        sink.write(data)
        await sink.drain()


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int) -> None:
    """Answer ``status`` and close: half-close first and drain what the client still sends
    (for at most :data:`LINGER_SECONDS`), so the answer is read before the connection ends."""
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        writer.write(_answer(status))
        writer.write_eof()
        async with asyncio.timeout(LINGER_SECONDS):
            await writer.drain()
            while await reader.read(_CHUNK):
                pass
    writer.transport.abort()


class _Terminated(Exception):
    """SIGTERM, raised so that the socket's directory is removed before the process ends."""


@contextlib.contextmanager
def _sigterm_raised() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` in this block (main thread only).

    uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler it
    found; by default that one ends the process at once, before any ``finally`` of ours
    (the socket's directory would be left behind). uvicorn installs its own handler as its
    ``serve`` starts, before any await, so this one acts only on that raise.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; uvicorn captures none here either
        return

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _close(writer: asyncio.StreamWriter) -> None:
    # Closing flushes what is still buffered for the client; one that reads nothing more
    # is cut off after LINGER_SECONDS.
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            await writer.wait_closed()
    writer.transport.abort()


def _client_address(writer: asyncio.StreamWriter) -> str:
    peer: Any = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), int(peer[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "unknown"
