"""A short Redis lock per job, so two schedulers firing at once do the work once.

The jobs are idempotent without it (:mod:`fiml.sessions.jobs`); the lock only spares the
second run from repeating work the first is doing. It expires after ``ttl_seconds`` so a
crashed holder never blocks the job for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fiml.core.config import Settings
from fiml.core.errors import StorageUnavailableError
from fiml.sessions.backends.redis_keys import RedisKeyspace

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["RedisJobLock"]

logger = logging.getLogger(__name__)


class RedisJobLock:
    """Non-blocking per-job locks in Redis (one key per job, released when the run ends).

    ``client`` is lent (the process's one, :func:`~fiml.core.redis_client.open_redis`): the
    lock never closes it. Keys follow ``settings.redis_key_prefix``; each Redis call is
    bounded by ``settings.redis_timeout_seconds`` and fails with
    :class:`~fiml.core.errors.StorageUnavailableError`.
    """

    def __init__(
        self, client: RedisClient, *, settings: Settings, ttl_seconds: float = 600
    ) -> None:
        self._client = client
        self._keys = RedisKeyspace(settings.redis_key_prefix)
        self._timeout = settings.redis_timeout_seconds
        self.ttl_seconds = ttl_seconds

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        """Try to take job ``name``'s lock without waiting; yields whether this run has it."""
        from redis.exceptions import LockError, RedisError

        lock = self._client.lock(self._keys.job_lock(name), timeout=self.ttl_seconds)
        try:
            async with asyncio.timeout(self._timeout):
                acquired = bool(await lock.acquire(blocking=False))
        except (RedisError, OSError, TimeoutError) as exc:
            reason = str(exc) or f"no reply within {self._timeout:g} s"
            raise StorageUnavailableError("redis", f"the lock of job {name}: {reason}") from exc
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    async with asyncio.timeout(self._timeout):
                        await lock.release()
                except LockError:
                    logger.warning("the lock of job %s expired before the run ended", name)
