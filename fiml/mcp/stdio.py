"""The stdio transport of the MCP server, on the asyncio event loop with no thread per message.

The SDK's ``mcp.server.stdio.stdio_server`` reads stdin and writes stdout through
``anyio.wrap_file``: every line read, every write and every flush is a call handed to a
worker thread and back, three thread hand-offs per request (the ``mcp`` section of
benchmarks/RESULTS.md times both transports). This transport reads and writes the pipes
from the event loop itself (non-blocking descriptors, woken by the loop's selector) and
gives the SDK's server loop the same pair of streams: :class:`~mcp.shared.message.SessionMessage`
items (or the exception of a line that is no JSON-RPC message) to read, ``SessionMessage``
items to write.

What it keeps from the SDK's transport:

- one JSON-RPC message per line, UTF-8 (undecodable bytes read as U+FFFD), a ``\\r``
  before the ``\\n`` tolerated; a last line without ``\\n`` before EOF still counts;
- a line that is not a JSON-RPC message reaches the server as the validation error,
  in the read stream, and the server carries on;
- EOF on stdin ends the read stream, so the server returns normally;
- while serving, descriptor 0 reads the null device and descriptor 1 writes to
  stderr; the protocol uses private duplicates. A ``print()`` in a tool, or a child
  process, cannot write into the protocol stream (nor read from it); both descriptors
  are restored afterwards;
- each message is written whole, at once, before ``send`` returns (flushed per message).

What it adds: the client gets an answer to a line it cannot have meant, as JSON-RPC 2.0
asks (the SDK's server logs those at debug level and answers nothing, so the client waits
for its timeout): ``-32700`` (parse error) for a line that is no JSON, ``-32600`` (invalid
request) for JSON that is no JSON-RPC message or for a line over ``max_message_bytes``
(the rest of such a line is skipped unread). The error carries the request's id when the
line is a request with a usable id, else ``null``.

It needs the asyncio event loop (``anyio.run``'s default) and descriptors a selector can
watch, or regular files; on Windows, whose proactor loop cannot watch pipes,
:func:`run_stdio` uses the SDK's transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from types import TracebackType
from typing import Any, Final, Self

import anyio
import mcp_types as types
import pydantic_core
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage

from fiml.core.errors import FimlError, InvalidInputError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MessageTooLargeError",
    "StdioReadStream",
    "StdioTransportError",
    "StdioWriteStream",
    "run_stdio",
    "stdio_streams",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
"""The longest line read as a message; a longer one is answered with an error and skipped."""

logger = logging.getLogger(__name__)

_READ_SIZE: Final = 64 * 1024
"""A Linux pipe's default capacity: more than one read of a pipe can return."""
_STDIN, _STDOUT = 0, 1


class StdioTransportError(FimlError):
    """The stdio transport cannot start: the descriptors are taken, closed, or unusable."""


class MessageTooLargeError(ValueError):
    """A line longer than the transport's ``max_message_bytes``; delivered, not raised."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message longer than {limit} bytes; the line was skipped")
        self.limit = limit


# Which standard descriptors a transport in this process has moved aside right now.
_claimed: set[int] = set()
_claimed_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise StdioTransportError("the stdio transport runs on the asyncio event loop") from None


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _rejection(text: str, error: Exception) -> bytes:
    """The JSON-RPC error line answering a line that is no message (see the module doc)."""
    request_id: Any = None
    if isinstance(error, MessageTooLargeError):
        code, message = types.INVALID_REQUEST, f"Invalid Request: {error}"
    else:
        try:
            value = pydantic_core.from_json(text)
        except (ValueError, RecursionError):
            code, message = types.PARSE_ERROR, "Parse error: the line is not JSON"
        else:
            code, message = types.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message"
            if isinstance(value, dict) and "method" in value:
                candidate = value.get("id")
                usable = isinstance(candidate, str) or type(candidate) is int
                request_id = candidate if usable else None
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


class _ClosedOnExit:
    """``async with stream:`` closes the stream on the way out."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


class StdioWriteStream(_ClosedOnExit):
    """Messages out: one line each, written whole before :meth:`send` returns.

    Concurrent senders queue behind a lock, so lines never interleave. A send cancelled
    half-way keeps the rest of its line, written ahead of the next one, so a cancelled
    caller cannot leave a torn line on the wire.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._loop = _loop()
        self._lock = asyncio.Lock()
        self._unsent = bytearray()
        self._closed = False
        self._broken = False

    async def send(self, item: SessionMessage, /) -> None:
        """Write ``item`` as one JSON line (the SDK's serialization: aliases, set fields)."""
        if self._closed:
            raise anyio.ClosedResourceError
        data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        await self.write_line(data.encode() + b"\n")

    async def write_line(self, line: bytes) -> None:
        """Write an already encoded line (ending in ``\\n``) as one message."""
        async with self._lock:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._broken:
                raise anyio.BrokenResourceError
            self._unsent += line
            while self._unsent:
                try:
                    written = os.write(self._fd, self._unsent)
                except BlockingIOError:
                    await self._writable()
                    continue
                except (BrokenPipeError, ConnectionResetError) as exc:
                    self._broken = True
                    self._unsent.clear()
                    raise anyio.BrokenResourceError from exc
                del self._unsent[:written]

    async def _writable(self) -> None:
        ready = self._loop.create_future()
        self._loop.add_writer(self._fd, _wake, ready)
        try:
            await ready
        finally:
            self._loop.remove_writer(self._fd)

    async def aclose(self) -> None:
        """Refuse further sends; what a cancelled send left is written if the pipe takes it."""
        self._closed = True
        if self._unsent and not self._broken and not self._lock.locked():
            with suppress(OSError):
                del self._unsent[: os.write(self._fd, self._unsent)]


class StdioReadStream(_ClosedOnExit):
    """Messages in: each line parsed as a JSON-RPC message, as the SDK's transport does.

    :meth:`receive` returns the :class:`SessionMessage`, or the exception of a line that
    is none (after answering it through ``replies``), and raises ``anyio.EndOfStream``
    at EOF. One task receives at a time.
    """

    def __init__(self, fd: int, replies: StdioWriteStream, max_message_bytes: int) -> None:
        _check_limit(max_message_bytes)
        self._fd = fd
        self._loop = _loop()
        self._replies = replies
        self._limit = max_message_bytes
        self._buffer = bytearray()
        self._scanned = 0  # no newline in self._buffer[:self._scanned]
        self._skipping = False  # inside a line over the limit: drop bytes up to its newline
        self._eof = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    async def receive(self) -> SessionMessage | Exception:
        """The next message, or the error of the next line that is not one."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._waiter is not None:
            raise anyio.BusyResourceError("receiving")
        line = await self._next_line()
        if isinstance(line, MessageTooLargeError):
            await self._reply(_rejection("", line))
            return line
        text = line.decode("utf-8", "replace")
        try:
            message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
        except Exception as exc:  # the SDK's transport delivers any failure the same way
            await self._reply(_rejection(text, exc))
            return exc
        return SessionMessage(message)

    async def _reply(self, line: bytes) -> None:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._replies.write_line(line)

    async def _next_line(self) -> bytes | MessageTooLargeError:
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                if self._skipping:
                    self._skipping = False
                    continue
                if newline > self._limit:
                    return MessageTooLargeError(self._limit)
                return line
            if self._skipping:
                self._buffer.clear()
            elif len(self._buffer) > self._limit:
                self._buffer.clear()
                self._skipping = True
                self._scanned = 0
                return MessageTooLargeError(self._limit)
            self._scanned = len(self._buffer)
            if self._eof:
                if self._buffer.strip() and not self._skipping:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    self._scanned = 0
                    return line
                raise anyio.EndOfStream
            chunk = await self._read()
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    async def _read(self) -> bytes:
        while True:
            try:
                return os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                pass
            except ConnectionResetError:
                return b""
            self._waiter = self._loop.create_future()
            self._loop.add_reader(self._fd, _wake, self._waiter)
            try:
                await self._waiter
            finally:
                self._loop.remove_reader(self._fd)
                self._waiter = None

    async def aclose(self) -> None:
        """Stop reading; a task waiting in :meth:`receive` gets ``ClosedResourceError``."""
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(anyio.ClosedResourceError())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


def _check_limit(max_message_bytes: int) -> None:
    if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
        raise InvalidInputError("max_message_bytes", max_message_bytes, "must be an integer")
    if max_message_bytes < 1:
        raise InvalidInputError("max_message_bytes", max_message_bytes, "must be at least 1")


def _claim(fd: int, diversion: Callable[[], int]) -> int:
    """Move standard descriptor ``fd`` aside; return the private duplicate now carrying it.

    ``fd`` itself then refers to ``diversion()`` (the null device for stdin, stderr for
    stdout) until :func:`_release`.
    """
    with _claimed_lock:
        if fd in _claimed:
            raise StdioTransportError(f"descriptor {fd} already serves another stdio transport")
        _claimed.add(fd)
    wire = -1
    try:
        # Above the standard range, and not inherited by child processes.
        wire = _dup_private(fd)
        other = diversion()
        try:
            os.dup2(other, fd)
        finally:
            os.close(other)
    except OSError as exc:
        if wire >= 0:
            with suppress(OSError):
                os.dup2(wire, fd)
            os.close(wire)
        with _claimed_lock:
            _claimed.discard(fd)
        raise StdioTransportError(f"cannot serve MCP on descriptor {fd}: {exc}") from exc
    return wire


def _release(fd: int, wire: int) -> None:
    """Point ``fd`` back at what :func:`_claim` moved aside, and drop the duplicate."""
    try:
        os.dup2(wire, fd)
    except OSError:
        # fd still points at the diversion; keep the claim so no later transport uses it.
        return
    os.close(wire)
    with _claimed_lock:
        _claimed.discard(fd)


def _dup_private(fd: int) -> int:
    if sys.platform == "win32":  # pragma: no cover - run_stdio keeps the SDK's transport there
        return os.dup(fd)
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _null_input() -> int:
    return os.open(os.devnull, os.O_RDONLY)


def _stderr_output() -> int:
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


@asynccontextmanager
async def stdio_streams(
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> AsyncIterator[tuple[StdioReadStream, StdioWriteStream]]:
    """The server's streams over the process's stdin and stdout, or the given descriptors.

    Without ``stdin``/``stdout`` the standard descriptors are claimed (see the module
    doc) and restored on exit; :class:`StdioTransportError` if another transport of this
    process holds them. Given descriptors stay the caller's: used, never closed. Each
    descriptor is made non-blocking while the block runs.
    """
    _check_limit(max_message_bytes)
    sys_stdout = sys.stdout
    claims: list[tuple[int, int]] = []
    modes: list[tuple[int, bool]] = []
    try:
        if stdin is None:
            stdin = _claim(_STDIN, _null_input)
            claims.append((_STDIN, stdin))
        if stdout is None:
            stdout = _claim(_STDOUT, _stderr_output)
            claims.append((_STDOUT, stdout))
        for fd in (stdin, stdout):
            try:
                modes.append((fd, os.get_blocking(fd)))
                os.set_blocking(fd, False)
            except OSError as exc:
                raise StdioTransportError(f"cannot serve MCP on descriptor {fd}: {exc}") from exc
        write_stream = StdioWriteStream(stdout)
        read_stream = StdioReadStream(stdin, write_stream, max_message_bytes)
        yield read_stream, write_stream
    finally:
        if sys_stdout is not None and not sys_stdout.closed:
            # Stray output buffered while serving belongs to the diversion, not the wire.
            with suppress(Exception):
                sys_stdout.flush()
        for fd, blocking in reversed(modes):
            with suppress(OSError):
                os.set_blocking(fd, blocking)
        for fd, wire in reversed(claims):
            _release(fd, wire)


async def run_stdio(server: MCPServer) -> None:
    """Serve ``server`` over stdin and stdout until the client closes stdin.

    On Windows this is the SDK's own stdio transport (see the module doc).
    """
    if sys.platform == "win32":  # pragma: no cover
        await server.run_stdio_async()
        return
    # MCPServer runs its stdio transport only through the SDK's; the low-level server
    # under it serves any pair of streams (the SDK's in-memory client reaches it so too).
    lowlevel = getattr(server, "_lowlevel_server", None)
    if lowlevel is None:  # an SDK release that moved it: its own transport still works
        logger.warning("mcp %s: serving stdio on the SDK's transport", _sdk_version())
        await server.run_stdio_async()
        return
    async with stdio_streams() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def _sdk_version() -> str:
    from importlib.metadata import version

    return version("mcp")
