"""The background jobs, as plain async functions returning typed statistics.

Celery tasks (:mod:`fiml.sessions.tasks`), the in-process scheduler
(:mod:`fiml.sessions.scheduler`) and the command line all run these same functions:

- :func:`run_cleanup` archives expired and closed sessions, recording each one's analytics
  facts in the transaction that archives it (every ``session_cleanup_interval_minutes``);
  sessions it could not archive are counted as failed (the archive is unreachable) or
  quarantined (see :mod:`fiml.sessions.archival`), and stay where they are;
- :func:`run_retention` creates the archive's monthly partitions ahead on PostgreSQL
  (this month and the next two) and deletes archives older than ``session_retention_days``,
  dropping whole months where it can (daily);
- :func:`run_metrics` records facts for any archived session that has none (daily): a
  backstop, for sessions archived while analytics was off.

Every job is idempotent and safe to run concurrently with itself: the store archives each
session exactly once, and facts are inserted only where none exist, so two runs at once
archive and count each session once between them. :func:`run_job` additionally skips a run
while another holds the job's lock, so concurrent schedulers do not repeat the work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel

from fiml.core import tracing
from fiml.core.audit import SYSTEM_ACTOR, acting_as
from fiml.core.config import Settings
from fiml.core.metrics import recorder
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.models import utcnow
from fiml.sessions.store import SessionStore

__all__ = [
    "CLEANUP_JOB",
    "METRICS_JOB",
    "RETENTION_JOB",
    "CleanupStats",
    "Job",
    "JobLock",
    "JobStats",
    "MetricsStats",
    "RetentionStats",
    "job_intervals",
    "run_cleanup",
    "run_job",
    "run_metrics",
    "run_retention",
    "session_jobs",
]

logger = logging.getLogger("fiml.jobs")

CLEANUP_JOB = "cleanup_expired_sessions"
RETENTION_JOB = "delete_old_archived_sessions"
METRICS_JOB = "generate_session_metrics"
DAILY = timedelta(days=1)


class JobStats(BaseModel):
    """What one run of a job did; ``skipped`` runs did nothing (``reason`` says why)."""

    job: str
    started_at: datetime
    duration_seconds: float = 0.0
    skipped: bool = False
    reason: str | None = None


class CleanupStats(JobStats):
    """Sessions this run archived, could not archive (``failed``: the archive is down,
    retried next run; ``quarantined``: see :mod:`fiml.sessions.quarantine`), and the
    analytics facts it recorded for the archived ones."""

    archived: int = 0
    failed: int = 0
    quarantined: int = 0
    metrics_recorded: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every session due was archived."""
        return not (self.failed or self.quarantined)


class RetentionStats(JobStats):
    """Archived sessions this run deleted for being older than the retention period."""

    deleted: int = 0
    partitions_created: int = 0
    """PostgreSQL: monthly archive partitions this run created ahead (current + 2 months)."""
    retention_days: float | None = None


class MetricsStats(JobStats):
    """Archived sessions this run recorded analytics facts for, and the archived records it
    skipped because they cannot be read (each is logged with its session id)."""

    recorded: int = 0
    skipped_records: int = 0


def _elapsed(start: float) -> float:
    return round(time.monotonic() - start, 6)


def _analytics_for(store: SessionStore, analytics: SessionAnalytics | None) -> SessionAnalytics:
    return analytics if analytics is not None else SessionAnalytics(store)


async def run_cleanup(
    store: SessionStore, analytics: SessionAnalytics | None = None, *, batch_size: int = 1000
) -> CleanupStats:
    """Archive every expired or closed session, with its analytics facts (unless
    ``session_enable_analytics`` is off); ``analytics`` is accepted for symmetry with the
    other jobs, the facts are written by the archiving transaction itself."""
    del analytics
    started, clock = store.now(), time.monotonic()
    report = await store.cleanup_expired_sessions(batch_size=batch_size)
    return CleanupStats(
        job=CLEANUP_JOB,
        started_at=started,
        duration_seconds=_elapsed(clock),
        **asdict(report),
    )


async def run_retention(
    store: SessionStore, *, retention_days: float | None = None
) -> RetentionStats:
    """Create the archive's partitions ahead (PostgreSQL), then delete archives older than
    ``retention_days`` (default: ``session_retention_days``)."""
    started, clock = store.now(), time.monotonic()
    days = store.settings.session_retention_days if retention_days is None else retention_days
    created = await store.prepare_archive()
    deleted = await store.delete_old_archived_sessions(retention_days=days)
    return RetentionStats(
        job=RETENTION_JOB,
        started_at=started,
        duration_seconds=_elapsed(clock),
        deleted=deleted,
        partitions_created=created,
        retention_days=days,
    )


async def run_metrics(
    store: SessionStore, analytics: SessionAnalytics | None = None, *, batch_size: int = 1000
) -> MetricsStats:
    """Record facts for every archived session that has none; skipped if analytics is off."""
    started, clock = store.now(), time.monotonic()
    if not store.settings.session_enable_analytics:
        return MetricsStats(
            job=METRICS_JOB, started_at=started, skipped=True, reason="analytics is disabled"
        )
    report = await _analytics_for(store, analytics).record_archived_metrics(batch_size=batch_size)
    return MetricsStats(
        job=METRICS_JOB,
        started_at=started,
        duration_seconds=_elapsed(clock),
        recorded=report.recorded,
        skipped_records=len(report.skipped),
    )


@dataclass(frozen=True, slots=True)
class Job:
    """A named job, how often it runs, and how to run it once."""

    name: str
    interval: timedelta
    run: Callable[[], Awaitable[JobStats]]
    stats_type: type[JobStats] = JobStats


def job_intervals(settings: Settings) -> dict[str, timedelta]:
    """How often each job runs: cleanup per the settings, retention and metrics daily."""
    return {
        CLEANUP_JOB: timedelta(minutes=settings.session_cleanup_interval_minutes),
        RETENTION_JOB: DAILY,
        METRICS_JOB: DAILY,
    }


def session_jobs(store: SessionStore, analytics: SessionAnalytics | None = None) -> list[Job]:
    """The three session jobs bound to ``store``, with their intervals from its settings."""
    every = job_intervals(store.settings)
    facts = _analytics_for(store, analytics)

    async def cleanup() -> JobStats:
        return await run_cleanup(store, facts)

    async def retention() -> JobStats:
        return await run_retention(store)

    async def metrics() -> JobStats:
        return await run_metrics(store, facts)

    return [
        Job(CLEANUP_JOB, every[CLEANUP_JOB], cleanup, CleanupStats),
        Job(RETENTION_JOB, every[RETENTION_JOB], retention, RetentionStats),
        Job(METRICS_JOB, every[METRICS_JOB], metrics, MetricsStats),
    ]


class JobLock(Protocol):
    """A lock shared by every process that may run the same job."""

    def hold(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Try to take the lock of job ``name`` without waiting; yields whether it did."""
        ...


async def run_job(job: Job, *, lock: JobLock | None = None) -> JobStats:
    """Run ``job`` once; under ``lock``, a run that finds the lock held is skipped.

    Every run is counted, logged once (``job.run``: the job, its outcome, duration and
    statistics) and with tracing on a span (``fiml.job <name>``); a run that raises is
    logged at ERROR with the error's class and re-raised.
    """
    started = time.monotonic()
    span = tracing.start(tracing.JOB_SPAN, job.name, {"fiml.job": job.name})
    try:
        with acting_as(SYSTEM_ACTOR):  # whoever started the process, jobs act on their own
            stats = await _run_locked(job, lock)
    except Exception as exc:
        if span is not None:
            span.end(exc, "failed")
        recorder().job_run(job.name, "failed")
        recorder().error(type(exc).__name__)
        logger.error(
            "job %s failed",
            job.name,
            extra={
                "event": "job.run",
                "job": job.name,
                "outcome": "failed",
                "error": type(exc).__name__,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            },
        )
        raise
    outcome = "skipped" if stats.skipped else "ok"
    if span is not None:
        span.end(None, outcome, _counts(stats))
    recorder().job_run(job.name, outcome)
    logger.info(
        "job %s %s",
        job.name,
        outcome,
        extra={
            "event": "job.run",
            "outcome": outcome,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
            **stats.model_dump(mode="json", exclude={"started_at", "duration_seconds"}),
        },
    )
    return stats


def _counts(stats: JobStats) -> dict[str, int]:
    """A run's counts as span attributes (``fiml.job.archived``...)."""
    fields = stats.model_dump(exclude={"duration_seconds", "retention_days"})
    return {f"fiml.job.{k}": v for k, v in fields.items() if type(v) is int}


async def _run_locked(job: Job, lock: JobLock | None) -> JobStats:
    if lock is None:
        return await job.run()
    async with lock.hold(job.name) as acquired:
        if not acquired:
            return job.stats_type(
                job=job.name,
                started_at=utcnow(),
                skipped=True,
                reason="another run of this job holds its lock",
            )
        return await job.run()
