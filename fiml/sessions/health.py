"""Readiness: can this process serve sessions right now, and if not, which part is missing.

:func:`check_readiness` asks each part once, each within ``within_seconds`` (a frozen
service reads as down, it never hangs the probe):

- ``active_tier`` and ``archive``: reachable, by reading a session that cannot exist (one
  exchange with Redis, one indexed read of the database);
- ``schema``: the database's migration revision is this FIML's newest;
- ``redis_persistence`` (with Redis only): whether Redis keeps the active sessions over a
  restart (AOF or RDB on). Off is reported, not failed: it is a choice of the operator's,
  and the process serves all the same;
- ``scheduler``: the in-process job scheduler is running, when this process runs the jobs
  (with Celery, the workers' own health is Celery's to report).

Each check is a dict with ``ok`` and what it found; the report is ready when every check is.
Reasons name the service and the failure, never a password (URLs are not shown).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypedDict
from uuid import UUID

from fiml.core.config import Settings
from fiml.core.errors import FimlError
from fiml.sessions.backends.sql_archive import SqlArchive
from fiml.sessions.scheduler import JobScheduler
from fiml.sessions.schema import current_revision, head_revision
from fiml.sessions.store import SessionStore

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "ReadinessReport", "check_readiness", "deployment_readiness"]

DEFAULT_TIMEOUT_SECONDS = 3.0
_NO_SESSION = UUID(int=0)
"""A session id no session has (ids are random UUIDs): reading it costs one lookup."""


class ReadinessReport(TypedDict):
    """``ready`` and every check (see the module docstring)."""

    ready: bool
    checks: dict[str, dict[str, Any]]


async def _bounded(
    probe: Callable[[], Awaitable[dict[str, Any]]], seconds: float
) -> dict[str, Any]:
    try:
        async with asyncio.timeout(seconds):
            return await probe()
    except TimeoutError:
        return {"ok": False, "reason": f"no answer within {seconds:g} s"}
    except FimlError as exc:
        return {"ok": False, "error": type(exc).__name__, "reason": str(exc)}
    except Exception as exc:  # a driver's own error: its class says enough
        return {"ok": False, "error": type(exc).__name__, "reason": type(exc).__name__}


async def check_readiness(
    store: SessionStore,
    *,
    redis: RedisClient | None = None,
    scheduler: JobScheduler | None = None,
    jobs_in_process: bool = False,
    within_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> ReadinessReport:
    """Ask every part of the deployment (see the module docstring) concurrently."""

    async def active() -> dict[str, Any]:
        await store.backend.load(_NO_SESSION, recent_queries=0)
        return {"ok": True, "backend": store.backend.name}

    async def archive() -> dict[str, Any]:
        await store.archive.load(_NO_SESSION, recent_queries=0)
        return {"ok": True, "backend": store.archive.name}

    async def schema() -> dict[str, Any]:
        head = head_revision()
        tier = store.archive
        current = await current_revision(tier.engine) if isinstance(tier, SqlArchive) else head
        return {"ok": current == head, "revision": current, "head": head}

    async def persistence() -> dict[str, Any]:
        from fiml.sessions.backends.redis_persistence import read_persistence

        assert redis is not None
        found = await read_persistence(redis)
        return {"ok": True, "aof": found.aof, "rdb": found.rdb, "durable": found.aof or found.rdb}

    async def jobs() -> dict[str, Any]:
        if not jobs_in_process:
            return {"ok": True, "in_process": False}
        running = scheduler is not None and scheduler.running
        failures = {} if scheduler is None else dict(scheduler.failures)
        return {"ok": running, "in_process": True, "running": running, "failures": failures}

    probes: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "active_tier": active,
        "archive": archive,
        "schema": schema,
        "scheduler": jobs,
    }
    active_tier: object = store.backend
    if active_tier is store.archive:  # SQL alone: one database, asked once
        del probes["active_tier"]
    if redis is not None:
        probes["redis_persistence"] = persistence
    results = await asyncio.gather(*(_bounded(p, within_seconds) for p in probes.values()))
    checks = dict(zip(probes, results, strict=True))
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}


async def deployment_readiness(
    settings: Settings, *, within_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> ReadinessReport:
    """The readiness of the deployment the settings describe, asked from a process of its
    own (``fiml status``): the same checks but the scheduler's, which lives in the server.

    A store that cannot even start (a database down, a schema behind) is reported as the
    ``store`` check, with the error's class and message.
    """
    from fiml.core.redis_client import open_redis
    from fiml.sessions.backends import build_backends

    async with open_redis(settings.redis_url, settings) as redis:
        backend, archive = build_backends(settings, redis=redis)
        store = SessionStore(settings, backend=backend, archive=archive)
        started = await _bounded(lambda: _started(store), within_seconds)
        if not started["ok"]:
            await store.shutdown()
            return {"ready": False, "checks": {"store": started}}
        try:
            report = await check_readiness(store, redis=redis, within_seconds=within_seconds)
        finally:
            await store.shutdown()
    del report["checks"]["scheduler"]  # not this process's: ask the server's /readyz
    return report


async def _started(store: SessionStore) -> dict[str, Any]:
    await store.initialize()
    return {"ok": True}
