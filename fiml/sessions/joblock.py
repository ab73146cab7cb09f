"""A short Redis lock per job, so two schedulers firing at once do the work once.

The jobs are idempotent without it (:mod:`fiml.sessions.jobs`); the lock only spares the
second run from repeating work the first is doing. It expires after ``ttl_seconds`` so a
crashed holder never blocks the job for longer than that.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fiml.core.errors import MissingDependencyError
from fiml.sessions.backends.redis_keys import JOB_LOCK_PREFIX

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["JOB_LOCK_PREFIX", "RedisJobLock"]

logger = logging.getLogger(__name__)


class RedisJobLock:
    """Non-blocking per-job locks in Redis (one key per job, released when the run ends)."""

    def __init__(self, client: Redis, *, ttl_seconds: float = 600) -> None:
        self._client = client
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_url(cls, url: str, *, ttl_seconds: float = 600) -> RedisJobLock:
        """A lock on the Redis server at ``url``."""
        try:
            import redis.asyncio as redis
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise MissingDependencyError("redis", "redis") from None
        return cls(redis.Redis.from_url(url), ttl_seconds=ttl_seconds)

    async def close(self) -> None:
        """Close the Redis connections."""
        await self._client.aclose()

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        """Try to take job ``name``'s lock without waiting; yields whether this run has it."""
        from redis.exceptions import LockError

        lock = self._client.lock(JOB_LOCK_PREFIX + name, timeout=self.ttl_seconds)
        acquired = bool(await lock.acquire(blocking=False))
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    await lock.release()
                except LockError:
                    logger.warning("the lock of job %s expired before the run ended", name)
