"""The Redis connection pool of the session backend.

Two things differ from ``redis.asyncio.Redis.from_url``:

- the pool *waits* for a free connection (up to a minute) when all of them are busy,
  instead of failing, so a burst of concurrent writers queues rather than errors;
- when hiredis is installed (the ``redis`` extra installs it), connections pack commands
  with hiredis's C packer. redis-py's asyncio client parses replies with hiredis but packs
  commands in Python, at about a microsecond per argument; a session write or read is
  one script call of a dozen arguments, so packing was a measurable share of its cost.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.exceptions import DataError
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

__all__ = ["POOL_TIMEOUT_SECONDS", "blocking_pool"]

POOL_TIMEOUT_SECONDS = 60.0
"""How long a command waits for a free connection before it fails."""


class _HiredisPacking:
    """Mixin for a redis-py asyncio connection class: pack commands with hiredis."""

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


def blocking_pool(url: str, *, max_connections: int) -> redis.BlockingConnectionPool:
    """A pool for ``url`` (``redis://``, ``rediss://`` or ``unix://``) of up to
    ``max_connections``, replying with decoded strings."""
    options: dict[str, Any] = {}
    if HIREDIS_AVAILABLE:
        base = parse_url(url).get("connection_class", redis.Connection)
        options["connection_class"] = _packing(base)
    return redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_SECONDS,
        decode_responses=True,
        **options,
    )
