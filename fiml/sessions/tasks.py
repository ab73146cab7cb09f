"""Celery app, tasks and beat schedule for the session jobs (on the Redis broker).

Run a worker and beat with::

    celery -A fiml.sessions.tasks worker
    celery -A fiml.sessions.tasks beat

Tasks are plain synchronous functions: each builds a store from the settings, runs its
async job (:mod:`fiml.sessions.jobs`) with :func:`asyncio.run`, and returns the job's
statistics as a JSON-ready dict. While a run holds the job's Redis lock, a concurrent run
(a second beat scheduler, a manual trigger) returns ``{"skipped": true, ...}`` at once.
A run opens one Redis client, which the store and the job lock share; it is the run's
own, because a redis-py asyncio client belongs to the event loop it first ran in and each
run has a loop of its own.

The broker and result backend are ``celery_broker_url``, else ``redis_url``, else a Redis
on localhost. The module-level :data:`app` and :data:`CELERY_BEAT_SCHEDULE` read the
settings from the environment when this module is imported; use
:func:`create_celery_app` to build an app from explicit settings.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from fiml.core.config import Settings
from fiml.core.metrics import enable_metrics, recorder, serve_in_thread
from fiml.core.redis_client import open_redis
from fiml.core.tracing import configure_tracing, flush_tracing
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.backends import build_backends
from fiml.sessions.backends.redis_persistence import persistence_warning
from fiml.sessions.joblock import RedisJobLock
from fiml.sessions.jobs import (
    CLEANUP_JOB,
    METRICS_JOB,
    RETENTION_JOB,
    JobStats,
    job_intervals,
    run_job,
    session_jobs,
)
from fiml.sessions.store import SessionStore

__all__ = [
    "CELERY_BEAT_SCHEDULE",
    "DEFAULT_BROKER_URL",
    "TASK_NAMES",
    "app",
    "broker_url",
    "build_beat_schedule",
    "cleanup_expired_sessions",
    "create_celery_app",
    "delete_old_archived_sessions",
    "execute_job",
    "generate_session_metrics",
]

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
TASK_NAMES = {
    job: f"fiml.sessions.tasks.{job}" for job in (CLEANUP_JOB, RETENTION_JOB, METRICS_JOB)
}
"""Celery task name of each job."""

_SCHEDULE_ENTRIES = {
    CLEANUP_JOB: "cleanup-expired-sessions",
    RETENTION_JOB: "delete-old-archived-sessions",
    METRICS_JOB: "generate-session-metrics",
}


def broker_url(settings: Settings) -> str:
    """The broker and result backend URL for these settings."""
    return settings.celery_broker_url or settings.redis_url or DEFAULT_BROKER_URL


def _lock_url(settings: Settings) -> str | None:
    url = settings.redis_url or broker_url(settings)
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat entries: cleanup every ``session_cleanup_interval_minutes``, the others daily.

    A queued run expires after one interval, so a worker that was down does not work
    through a backlog of identical runs.
    """
    schedule: dict[str, dict[str, Any]] = {}
    for job, interval in job_intervals(settings).items():
        schedule[_SCHEDULE_ENTRIES[job]] = {
            "task": TASK_NAMES[job],
            "schedule": interval,
            "options": {"expires": interval.total_seconds()},
        }
    return schedule


async def _run(settings: Settings, job_name: str) -> JobStats:
    async with open_redis(_lock_url(settings), settings) as redis:
        # The lock's Redis is the sessions' Redis when there is one, else the broker's.
        sessions_redis = redis if settings.redis_url else None
        backend, archive = build_backends(settings, redis=sessions_redis)
        lock = None if redis is None else RedisJobLock(redis, settings=settings)
        async with SessionStore(settings, backend=backend, archive=archive) as store:
            jobs = {job.name: job for job in session_jobs(store, SessionAnalytics(store))}
            return await run_job(jobs[job_name], lock=lock)


def execute_job(settings: Settings, job_name: str) -> dict[str, Any]:
    """Run one session job to completion in a fresh event loop; its stats as JSON."""
    if job_name not in TASK_NAMES:
        raise ValueError(f"unknown job {job_name!r}; known: {', '.join(TASK_NAMES)}")
    if settings.metrics_port is not None and not recorder().enabled:
        enable_metrics()  # in the pool process that runs the task
    traced = configure_tracing()
    try:
        return asyncio.run(_run(settings, job_name)).model_dump(mode="json")
    finally:
        if traced:  # a pool process may be ended without its exit hooks
            flush_tracing()


def _register_tasks(celery: Any, settings: Settings) -> None:
    def register(job_name: str, doc: str) -> None:
        def task() -> dict[str, Any]:
            return execute_job(settings, job_name)

        task.__name__ = task.__qualname__ = job_name
        task.__doc__ = doc
        celery.task(
            name=TASK_NAMES[job_name], shared=False, acks_late=True, reject_on_worker_lost=True
        )(task)

    register(CLEANUP_JOB, "Archive expired and closed sessions; record their analytics facts.")
    register(
        RETENTION_JOB,
        "Create the archive's partitions ahead; delete archived sessions older than "
        "session_retention_days.",
    )
    register(METRICS_JOB, "Record analytics facts for archived sessions that have none.")


def _warn_at_worker_start(celery: Any, settings: Settings) -> None:
    """Log one warning when this app's worker starts on a Redis that would lose the active
    sessions on a restart."""

    def warn(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is celery:  # the signal fires for every app
            warning = asyncio.run(persistence_warning(settings))
            if warning is not None:
                logging.getLogger(__name__).warning(warning)

    worker_ready.connect(warn, weak=False)


def _serve_metrics_at_worker_start(celery: Any, settings: Settings) -> None:
    """With ``metrics_port`` set, serve /metrics from the worker's main process. Its pool
    processes run the tasks: their counts reach that port only in the client library's
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR, see docs/OPERATIONS.md)."""

    def serve(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is celery and settings.metrics_port is not None:
            serve_in_thread(settings.metrics_host, settings.metrics_port)

    worker_ready.connect(serve, weak=False)


def create_celery_app(settings: Settings | None = None) -> Any:
    """A Celery app on the settings' broker with the session tasks and beat schedule."""
    settings = settings or Settings()
    url = broker_url(settings)
    celery = Celery("fiml", broker=url, backend=url, set_as_current=False)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        result_expires=timedelta(days=1),
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
    )
    celery.conf.beat_schedule = {
        **(celery.conf.beat_schedule or {}),
        **build_beat_schedule(settings),
    }
    _register_tasks(celery, settings)
    _warn_at_worker_start(celery, settings)
    _serve_metrics_at_worker_start(celery, settings)
    return celery


app = create_celery_app()
"""The app ``celery -A fiml.sessions.tasks`` runs, configured from the environment."""

CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = dict(app.conf.beat_schedule)
"""The beat schedule of :data:`app` (see :func:`build_beat_schedule`)."""

cleanup_expired_sessions = app.tasks[TASK_NAMES[CLEANUP_JOB]]
delete_old_archived_sessions = app.tasks[TASK_NAMES[RETENTION_JOB]]
generate_session_metrics = app.tasks[TASK_NAMES[METRICS_JOB]]
