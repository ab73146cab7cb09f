"""The Redis connection pool of the session backend.

Two things differ from ``redis.asyncio.Redis.from_url``:

- the pool *waits* for a free connection (up to a minute) when all of them are busy,
  instead of failing, so a burst of concurrent writers queues rather than errors. It is
  :class:`WaitingConnectionPool`, not redis-py's ``BlockingConnectionPool``, which takes
  an ``asyncio.Condition``, arms a timeout timer and records observability counters on
  every checkout and return: about 30 microseconds per command, a third of a local round
  trip. Here a checkout that finds a free connection takes it at once; only one that
  finds every connection busy queues, first come first served;
- when hiredis is installed (the ``redis`` extra installs it), connections pack commands
  with hiredis's C packer. redis-py's asyncio client parses replies with hiredis but packs
  commands in Python, at about a microsecond per argument; a session write or read is
  one script call of a dozen arguments, so packing was a measurable share of its cost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

__all__ = ["POOL_TIMEOUT_SECONDS", "WaitingConnectionPool", "waiting_pool"]

POOL_TIMEOUT_SECONDS = 60.0
"""How long a command waits for a free connection before it fails."""


class WaitingConnectionPool(redis.ConnectionPool):
    """At most ``max_connections`` connections; a checkout that finds them all in use
    waits up to ``timeout`` seconds for one (redis-py's ``ConnectionPool`` fails at once).

    A returned connection goes straight to the longest-waiting checkout, so no waiter is
    overtaken by a later caller, and a waiter cancelled or timed out just after it was
    handed a connection passes it on, so none is lost. Before use a connection must be
    connected and hold no unread data, else it reconnects (see :meth:`ensure_connection`).
    """

    def __init__(
        self,
        *,
        timeout: float = POOL_TIMEOUT_SECONDS,
        connect_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()
        super().__init__(**kwargs)
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    async def get_connection(self, *_args: Any, **_options: Any) -> AbstractConnection:
        """A connected connection, waiting for one to come back if all are in use."""
        if self._available_connections:
            connection = self._available_connections.pop()
            self._in_use_connections.add(connection)
        elif len(self._in_use_connections) < self.max_connections:
            connection = self.make_connection()  # type: ignore[no-untyped-call]
            self._in_use_connections.add(connection)
        else:
            connection = await self._wait()
        try:
            if not connection.is_connected or await connection.can_read():
                async with asyncio.timeout(self.connect_timeout):  # includes AUTH, SELECT...
                    await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        """Connect ``connection``, and reconnect it if it holds unread data or the server
        closed it. redis-py's pools skip the unread-data check when maintenance
        notifications are on, which is their default: a connection given back with a reply
        still unread (a caller cancelled mid-command) would hand that stale reply to the
        next command. Here the check always runs; at worst a server push waiting on an idle
        connection costs a reconnect."""
        await connection.connect()  # type: ignore[no-untyped-call]
        if await connection.can_read():
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]

    async def _wait(self) -> AbstractConnection:
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._hand_over(waiter.result())  # handed over, then cancelled: pass it on
            else:
                waiter.cancel()
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise RedisConnectionError("No connection available.") from None
            raise

    async def release(self, connection: AbstractConnection) -> None:
        """Return ``connection``: to the longest-waiting checkout, else to the free list."""
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        self._hand_over(connection)

    def _hand_over(self, connection: AbstractConnection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # stays in use, by the waiter now
                return
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)


class _HiredisPacking:
    """Mixin for a redis-py asyncio connection class: pack commands with hiredis."""

    def pack_commands(self, commands: Iterable[Sequence[Any]]) -> list[bytes]:
        """Several commands in one buffer (redis-py's own re-chunks them in Python)."""
        return [b"".join([self.pack_command(*command)[0] for command in commands])]

    def pack_command(self, *args: Any) -> list[bytes]:
        """The command in the Redis protocol, as redis-py's own packer would write it."""
        name = args[0]
        if isinstance(name, str) and " " in name:  # "SCRIPT LOAD", "CLIENT SETINFO", ...
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            pass
        views: Any = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [hiredis.pack_command(views)]
        except TypeError as exc:  # a bool or None, which redis-py refuses too
            raise DataError(str(exc)) from exc


_packing_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` (plain, TLS or Unix socket connection) with the hiredis packer."""
    if base not in _packing_classes:
        _packing_classes[base] = type(base.__name__, (_HiredisPacking, base), {})
    return _packing_classes[base]


def waiting_pool(
    url: str, *, max_connections: int, connect_timeout: float | None = None
) -> WaitingConnectionPool:
    """A pool for ``url`` (``redis://``, ``rediss://`` or ``unix://``) of up to
    ``max_connections`` that waits for a free one, replying with decoded strings.

    Its connections have no per-read or per-write timeout of their own (redis-py arms one
    timer per reply and starts a task per send for them): the caller bounds each whole
    exchange instead (see ``RedisBackend``). ``connect_timeout`` bounds connecting,
    handshake included.
    """
    options: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": connect_timeout}
    if HIREDIS_AVAILABLE:
        base = parse_url(url).get("connection_class", redis.Connection)
        options["connection_class"] = _packing(base)
    return WaitingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_SECONDS,
        connect_timeout=connect_timeout,
        decode_responses=True,
        **options,
    )
