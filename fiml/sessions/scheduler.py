"""In-process scheduler: the session jobs on their intervals, as asyncio tasks.

``fiml serve`` runs it when Celery is not configured (the embedded default)::

    async with JobScheduler.for_store(store):
        ...  # serve; cleanup runs every session_cleanup_interval_minutes, the rest daily

Each job runs once at start (unless ``run_at_start=False``) and then again one interval
after the previous run ended, so runs of one job never overlap. A failing run is logged
and the job runs again on its next interval. :meth:`JobScheduler.stop` lets a run in
progress finish (up to ``grace_seconds``) before cancelling it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.jobs import Job, JobLock, JobStats, run_job, session_jobs
from fiml.sessions.store import SessionStore

__all__ = ["JobScheduler"]

logger = logging.getLogger(__name__)


class JobScheduler:
    """Run jobs on their intervals inside the running event loop until stopped."""

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        lock: JobLock | None = None,
        run_at_start: bool = True,
        grace_seconds: float = 10.0,
        on_result: Callable[[JobStats], None] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.last_results: dict[str, JobStats] = {}
        self.failures: dict[str, int] = {job.name: 0 for job in self.jobs}
        self._lock = lock
        self._run_at_start = run_at_start
        self._grace = grace_seconds
        self._on_result = on_result
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def for_store(
        cls,
        store: SessionStore,
        analytics: SessionAnalytics | None = None,
        *,
        lock: JobLock | None = None,
        run_at_start: bool = True,
    ) -> JobScheduler:
        """A scheduler of the three session jobs on ``store``, intervals from its settings."""
        return cls(session_jobs(store, analytics), lock=lock, run_at_start=run_at_start)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return any(not task.done() for task in self._tasks)

    async def __aenter__(self) -> JobScheduler:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start one task per job; starting a running scheduler does nothing."""
        if self.running:
            return
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._loop(job), name=f"fiml-job-{job.name}") for job in self.jobs
        ]

    async def stop(self) -> None:
        """Stop every job: wait for runs in progress up to the grace period, then cancel."""
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self._grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        except TimeoutError:
            return False
        return True

    async def _loop(self, job: Job) -> None:
        delay = 0.0 if self._run_at_start else job.interval.total_seconds()
        while not await self._stopped_within(delay):
            await self._run_once(job)
            delay = job.interval.total_seconds()

    async def _run_once(self, job: Job) -> None:
        try:
            stats = await run_job(job, lock=self._lock)
        except Exception:
            self.failures[job.name] = self.failures.get(job.name, 0) + 1
            logger.exception(
                "background job %s failed; it runs again in %s", job.name, job.interval
            )
            return
        self.last_results[job.name] = stats  # run_job has logged it
        if self._on_result is not None:
            try:
                self._on_result(stats)
            except Exception:
                logger.exception("the result callback of job %s failed", job.name)
