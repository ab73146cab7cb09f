"""Where quotes are kept between lookups: in process memory, or in Redis shared by processes."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from fiml.core.config import DEFAULT_REDIS_KEY_PREFIX, DEFAULT_REDIS_TIMEOUT_SECONDS
from fiml.core.errors import InvalidInputError, MissingDependencyError, StorageUnavailableError
from fiml.market.base import Quote

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = [
    "DEFAULT_QUOTE_KEY_PREFIX",
    "MemoryQuoteCache",
    "QuoteCache",
    "RedisQuoteCache",
    "quote_key_prefix",
]


def quote_key_prefix(redis_key_prefix: str) -> str:
    """Where quotes go under a deployment's Redis key prefix (``FIML_REDIS_KEY_PREFIX``):
    ``<prefix>:quote:``, beside the session keys of ``fiml.sessions.backends.redis_keys``."""
    return f"{redis_key_prefix}:quote:"


DEFAULT_QUOTE_KEY_PREFIX = quote_key_prefix(DEFAULT_REDIS_KEY_PREFIX)
"""Prefix of every Redis key :class:`RedisQuoteCache` writes, unless told another."""


class QuoteCache(Protocol):
    """Keeps quotes for a while; ``get`` returns ``None`` when a key is absent or expired."""

    async def get(self, key: str) -> Quote | None:
        """The quote stored under ``key``, or ``None``."""
        ...

    async def set(self, key: str, quote: Quote) -> None:
        """Store ``quote`` under ``key`` for the cache's TTL, replacing any earlier one."""
        ...


def _positive_ttl(ttl_seconds: float) -> float:
    if not ttl_seconds > 0:
        raise InvalidInputError("ttl_seconds", ttl_seconds, "must be a positive number of seconds")
    return ttl_seconds


class MemoryQuoteCache:
    """An in-process cache: monotonic-clock expiry, least recently used entries evicted first."""

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise InvalidInputError("max_entries", max_entries, "must be at least 1")
        self._ttl = _positive_ttl(ttl_seconds)
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Quote]] = OrderedDict()

    async def get(self, key: str) -> Quote | None:
        """The quote under ``key`` if it was stored less than ``ttl_seconds`` ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, quote = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return quote

    async def set(self, key: str, quote: Quote) -> None:
        """Store ``quote``, evicting the least recently used entry when full."""
        self._entries[key] = (self._clock() + self._ttl, quote)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        """How many entries are held, expired ones not yet dropped included."""
        return len(self._entries)


class RedisQuoteCache:
    """A cache in Redis, shared by every process using the same server and ``prefix``.

    Quotes are stored as JSON with ``SET ... EX``, so Redis expires them. The client belongs to
    the caller, who closes it. A Redis failure, or no reply within ``timeout_seconds``, raises
    :class:`~fiml.core.errors.StorageUnavailableError`.
    """

    def __init__(
        self,
        redis_client: RedisClient,
        ttl_seconds: float,
        prefix: str = DEFAULT_QUOTE_KEY_PREFIX,
        *,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
    ) -> None:
        try:
            from redis.exceptions import RedisError
        except ImportError as exc:  # pragma: no cover - only without the redis extra
            raise MissingDependencyError("redis", "redis") from exc
        self._redis = redis_client
        self._redis_error: type[Exception] = RedisError
        # Redis expiry is whole seconds; round up so a quote never lives shorter than asked.
        self._ttl = math.ceil(_positive_ttl(ttl_seconds))
        self._prefix = prefix
        self._timeout = timeout_seconds

    async def get(self, key: str) -> Quote | None:
        """The quote under ``key``, or ``None`` if absent, expired or unreadable."""
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.get(self._prefix + key)
        except (self._redis_error, OSError, TimeoutError) as exc:
            raise self._unavailable("reading a cached quote", exc) from exc
        if raw is None:
            return None
        try:
            return Quote.model_validate_json(raw)
        except ValidationError:
            # Written by an older FIML with another Quote shape: a miss, refreshed on set.
            return None

    async def set(self, key: str, quote: Quote) -> None:
        """Store ``quote`` as JSON under the prefixed ``key`` with the cache's TTL."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(self._prefix + key, quote.model_dump_json(), ex=self._ttl)
        except (self._redis_error, OSError, TimeoutError) as exc:
            raise self._unavailable("caching a quote", exc) from exc

    def _unavailable(self, doing: str, exc: Exception) -> StorageUnavailableError:
        reason = str(exc) or f"no reply within {self._timeout:g} s"
        return StorageUnavailableError("redis", f"{doing} failed: {reason}")
