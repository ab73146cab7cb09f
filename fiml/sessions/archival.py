"""Archival: moving finished sessions into the archive without ever losing one.

Three outcomes for each session a cleanup meets, counted in its :class:`CleanupReport`:

- *archived*: it is in the archive (and, with analytics on, its facts were recorded in the
  same transaction); only then is it removed from the active tier.
- *failed*: the archive could not be reached (or refused every write, a full disk); the
  session stays where it is, readable, and the next run tries it again. The run stops at
  the first such failure: the sessions after it would fail the same way.
- *quarantined*: the archive refused this session for a reason of its own (a value it
  cannot hold), or its record does not decode. It stays where it is, is recorded in the
  quarantine with the reason (:mod:`fiml.sessions.quarantine`), is tried again by every
  run, and never stops the others.

Nothing here deletes a session that is not safely in the archive, and no TTL does either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from fiml.core.errors import (
    CorruptRecordError,
    FimlError,
    StorageError,
    StorageRefusedError,
)
from fiml.core.metrics import recorder
from fiml.sessions.backends.base import ActiveTier, ArchiveTier
from fiml.sessions.events import SessionEvent
from fiml.sessions.metrics import SessionFacts
from fiml.sessions.models import Session
from fiml.sessions.quarantine import failure_reason

__all__ = ["Archiver", "CleanupReport"]

logger = logging.getLogger("fiml.sessions.archival")
_ARCHIVE_CHUNK = 500
"""Sessions archived per concurrent chunk of a cleanup batch (tiered deployments)."""


def _count_archived(sessions: Sequence[Session], *, now: datetime) -> None:
    """Report sessions this run archived to the metrics, judged as their analytics facts
    are (counted when the archive took them: once, whichever run that was)."""
    if recorder().enabled:
        _count_facts([SessionFacts.from_session(session, now=now) for session in sessions])


def _count_facts(archived: Sequence[SessionFacts]) -> None:
    metrics = recorder()
    if not metrics.enabled:
        return
    for facts in archived:
        metrics.session_archived(
            facts.session_type,
            expired=not facts.completed,
            abandoned=facts.abandoned,
            duration_seconds=facts.duration_seconds,
        )


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup run (or one batch of it) did; see the module docstring."""

    archived: int = 0
    failed: int = 0
    quarantined: int = 0
    metrics_recorded: int = 0
    error: str | None = None
    """Why the ``failed`` sessions could not be archived (the first failure)."""

    @property
    def ok(self) -> bool:
        """True when every session due was archived."""
        return not (self.failed or self.quarantined)

    def __add__(self, other: CleanupReport) -> CleanupReport:
        return CleanupReport(
            archived=self.archived + other.archived,
            failed=self.failed + other.failed,
            quarantined=self.quarantined + other.quarantined,
            metrics_recorded=self.metrics_recorded + other.metrics_recorded,
            error=self.error or other.error,
        )


class _Refused(Exception):
    """The archive refused the sessions of one import for what they hold, not for an
    outage: a database error that is no connection, disk or timeout fault."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Archiver:
    """Archives sessions from the active tier into the archive tier (possibly the same)."""

    def __init__(self, backend: ActiveTier, archive: ArchiveTier, *, record_facts: bool):
        self.backend = backend
        self.archive = archive
        self.record_facts = record_facts

    @property
    def tiered(self) -> bool:
        """Whether sessions move between two stores (Redis -> SQL) or are archived in place."""
        active: object = self.backend  # the same object as the archive on SQL alone
        return active is not self.archive

    async def cleanup(self, *, batch_size: int, clock: Callable[[], datetime]) -> CleanupReport:
        """Archive every session due by ``clock`` (expired or closed), ``batch_size`` at a
        time, and log what was archived, failed and quarantined.

        The run stops at the first failed batch (the archive is unreachable: the sessions
        after it would fail the same way); sessions failed or quarantined stay where they
        are and are skipped by the rest of the run.
        """
        report = CleanupReport()
        while True:
            now = clock()
            left_behind = report.failed + report.quarantined
            ids = await self.backend.expired_ids(now=now, limit=batch_size, skip=left_behind)
            if not ids:
                break
            report += await self._archive_batch(ids, now=now)
            if report.failed or len(ids) < batch_size:
                break
        recorder().cleanup_run(
            archived=report.archived, failed=report.failed, quarantined=report.quarantined
        )
        log = logger.info if report.ok else logger.warning
        log(
            "cleanup archived %d, failed %d, quarantined %d",
            report.archived,
            report.failed,
            report.quarantined,
            extra={
                "event": "cleanup.done",
                "archived": report.archived,
                "failed": report.failed,
                "quarantined": report.quarantined,
            },
        )
        return report

    async def _archive_batch(self, ids: Sequence[UUID], *, now: datetime) -> CleanupReport:
        """Archive ``ids`` in concurrent chunks: while Redis or the database works on one
        chunk, this process encodes or decodes another. The chunks are disjoint, and each
        is archived crash-safely on its own; an active tier that fails is raised once all
        are done.
        """
        if not self.tiered or len(ids) <= _ARCHIVE_CHUNK:
            return await self.archive_due(ids, now=now)
        results = await asyncio.gather(
            *(
                self.archive_due(ids[start : start + _ARCHIVE_CHUNK], now=now)
                for start in range(0, len(ids), _ARCHIVE_CHUNK)
            ),
            return_exceptions=True,
        )
        report = CleanupReport()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            report += result
        return report

    async def archive_due(self, ids: Sequence[UUID], *, now: datetime) -> CleanupReport:
        """Archive due sessions: each archived, failed or quarantined (never raised for one
        session's sake; an active tier that cannot be reached is raised)."""
        if not self.tiered:
            return await self._in_place(ids, now=now, end_now=False)
        export = await self.backend.export_sessions(ids)
        bad: dict[UUID, tuple[str | None, str]] = {
            sid: (None, reason) for sid, reason in export.unreadable.items()
        }
        report = await self._move(export.sessions, bad, now=now, events=export.events)
        return report + await self._quarantine(bad, now=now)

    async def archive_now(self, session_id: UUID, *, now: datetime) -> bool:
        """Archive one session now, ending it if it is still running; False if it was not
        there to archive. A failure raises and leaves the session exactly as it was."""
        if not self.tiered:
            return (await self._in_place([session_id], now=now, end_now=True)).archived == 1
        export = await self.backend.export_sessions([session_id])
        try:
            if session_id in export.unreadable:
                raise CorruptRecordError(
                    self.backend.name, session_id, export.unreadable[session_id]
                )
            if not export.sessions:
                return False
            session = export.sessions[0]
            if session.expires_at > now:
                session = session.model_copy(update={"expires_at": now})
            try:
                await self._import([session], now=now, events=export.events)
            except _Refused as exc:
                raise StorageRefusedError(self.archive.name, exc.reason) from exc
        except BaseException:
            # Only the export that froze the session may thaw it: another archiver's
            # freeze (a cleanup moving it meanwhile) must stand.
            await self.backend.thaw(sorted(export.frozen_here))
            raise
        await self.backend.remove_archived([session_id])
        return True

    async def _in_place(
        self, ids: Sequence[UUID], *, now: datetime, end_now: bool
    ) -> CleanupReport:
        done = await self.archive.archive_in_place(
            ids, now=now, end_now=end_now, record_facts=self.record_facts
        )
        report = CleanupReport(archived=done.archived, metrics_recorded=done.metrics_recorded)
        _count_facts(done.facts)
        # Those whose facts do not decode: counted, their type unknown.
        recorder().sessions_archived_in_place(done.archived - len(done.facts))
        if not done.unreadable:
            return report
        # Archived, but its facts do not decode: quarantined so that retention keeps it.
        return report + replace(await self._quarantine(done.unreadable, now=now), quarantined=0)

    async def _import(
        self,
        sessions: Sequence[Session],
        *,
        now: datetime,
        events: dict[UUID, list[SessionEvent]],
    ) -> CleanupReport:
        try:
            archived, recorded = await self.archive.import_archived(
                sessions, archived_at=now, record_facts=self.record_facts, events=events
            )
        except FimlError:  # StorageError: an outage, raised as it is
            raise
        except Exception as exc:  # the database refused what a session holds
            raise _Refused(failure_reason(exc)) from exc
        if archived == len(sessions):
            _count_archived(sessions, now=now)
        else:  # another run archived some of them meanwhile: which ones, the count hides
            recorder().sessions_archived_in_place(archived)
        return CleanupReport(archived=archived, metrics_recorded=recorded)

    async def _move(
        self,
        sessions: Sequence[Session],
        bad: dict[UUID, tuple[str | None, str]],
        *,
        now: datetime,
        events: dict[UUID, list[SessionEvent]],
    ) -> CleanupReport:
        """Import ``sessions`` (and their timelines, ``events``) into the archive, then
        remove them from the active tier.

        A batch the archive refuses is imported again one session at a time, so that the
        sessions it can hold are archived and the others are added to ``bad``.
        """
        if not sessions:
            return CleanupReport()
        try:
            report = await self._import(sessions, now=now, events=events)
            moved = list(sessions)
        except StorageError as exc:
            return self._failed(len(sessions), exc)
        except _Refused:
            report, moved = CleanupReport(), []
            for position, session in enumerate(sessions):
                try:
                    report += await self._import([session], now=now, events=events)
                except StorageError as outage:
                    report += self._failed(len(sessions) - position, outage)
                    break
                except _Refused as refused:
                    bad[session.id] = (session.user_id, refused.reason)
                    continue
                moved.append(session)
        await self.backend.remove_archived([s.id for s in moved])
        return report

    def _failed(self, count: int, exc: BaseException) -> CleanupReport:
        logger.error(
            "archival failed: the archive cannot take writes",
            extra={"event": "archival.failed", "sessions": count, "reason": str(exc)},
        )
        return CleanupReport(failed=count, error=str(exc))

    async def _quarantine(
        self, bad: dict[UUID, tuple[str | None, str]], *, now: datetime
    ) -> CleanupReport:
        if not bad:
            return CleanupReport()
        try:
            await self.archive.quarantine(bad, now=now)
        except StorageError as exc:  # not recorded: they count as failed, tried next run
            return self._failed(len(bad), exc)
        recorder().sessions_quarantined(len(bad))
        for sid, (_user, reason) in bad.items():
            logger.warning(
                "session quarantined: archival cannot move it",
                extra={"event": "session.quarantined", "session_id": str(sid), "reason": reason},
            )
        return CleanupReport(quarantined=len(bad))
