"""Does the Redis holding active sessions keep them over a restart? One warning line if not.

On the Redis deployment an active session lives only in Redis until it is archived, so a
Redis without persistence loses every active session when it restarts. Only append-only
persistence (``appendonly yes``) keeps every acknowledged write; RDB snapshots (``save``)
keep the data as of the last snapshot. :func:`persistence_warning` warns when neither is
on, and says so when it cannot tell. ``fiml serve``, ``fiml db verify`` and the Celery
worker print or log its line at start; nothing refuses to run.

What is read: ``CONFIG GET appendonly`` and ``CONFIG GET save``; where CONFIG is disabled
(managed Redis services rename or forbid it) ``INFO persistence``, which shows whether AOF
is on but not the snapshot schedule, only whether a snapshot was taken since Redis started.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fiml.core.config import Settings
from fiml.core.redis_client import redis_client

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["Persistence", "persistence_warning", "read_persistence"]

ADVICE = "set `appendonly yes` in that Redis's configuration"
_LOST = "every active session is lost when it restarts"


@dataclass(frozen=True)
class Persistence:
    """What a Redis said about its persistence, and how it was asked."""

    aof: bool
    rdb: bool
    evidence: str
    """What was read, for the warning: ``appendonly no, save ""`` or the INFO fields."""


async def read_persistence(client: RedisClient) -> Persistence:
    """Ask a Redis how it persists; redis-py's errors pass when it cannot answer at all."""
    from redis.exceptions import ResponseError

    try:
        appendonly = str((await client.config_get("appendonly")).get("appendonly", ""))
        save = str((await client.config_get("save")).get("save", ""))
    except ResponseError:  # CONFIG disabled or renamed: what INFO shows instead
        info = await client.info("persistence")
        aof = bool(int(info.get("aof_enabled", 0)))
        snapshotted = (
            int(info.get("rdb_saves", 0)) > 0 or int(info.get("rdb_last_bgsave_time_sec", -1)) >= 0
        )
        evidence = f"INFO persistence: aof_enabled:{int(aof)}, no RDB snapshot since it started"
        return Persistence(aof=aof, rdb=snapshotted, evidence=evidence)
    evidence = f'appendonly {appendonly or "no"}, save "{save}"'
    return Persistence(aof=appendonly == "yes", rdb=bool(save.strip()), evidence=evidence)


def _shown(url: str) -> str:
    """``host:port/db`` of a Redis URL: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path or '/0'}"


async def persistence_warning(settings: Settings, client: RedisClient | None = None) -> str | None:
    """The one warning line for the settings' Redis, or None when it persists its writes
    (AOF or RDB on) or no Redis is configured.

    Asked on ``client``, the process's one client for ``settings.redis_url``; without one,
    on a client opened for this check alone (a process that uses Redis for nothing else).
    """
    if not settings.redis_url:
        return None
    if client is not None:
        return await _warning(settings.redis_url, client, settings)
    own = redis_client(settings.redis_url, settings)
    try:
        return await _warning(settings.redis_url, own, settings)
    finally:
        await own.aclose()


async def _warning(url: str, client: RedisClient, settings: Settings) -> str | None:
    from redis.exceptions import RedisError

    where = f"Redis at {_shown(url)}"
    timeout = settings.redis_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            found = await read_persistence(client)
    except (RedisError, OSError, TimeoutError) as exc:
        reason = str(exc) or f"no reply within {timeout:g} s"
        return (
            f"warning: could not check whether {where} persists its data ({reason}); "
            f"without `appendonly yes` {_LOST}"
        )
    if found.aof or found.rdb:
        return None
    return f"warning: {where} has no persistence ({found.evidence}): {_LOST}; {ADVICE}"
