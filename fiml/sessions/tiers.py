"""What a :class:`~fiml.sessions.store.SessionStore` stands on: its settings, its two tiers
(connected and closed together), and its clock.

The tiers are the active one (:class:`~fiml.sessions.backends.base.ActiveTier`) and the
archive (:class:`~fiml.sessions.backends.base.ArchiveTier`), built from the settings
unless given; on SQL-only deployments they are one object. The clock is the store's "now"
(see :class:`~fiml.sessions.store.SessionStore`): everything the store decides by the time,
it decides by :meth:`TieredStore.now`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Self

from fiml.core.config import Settings
from fiml.core.errors import InvalidInputError
from fiml.sessions.archival import Archiver
from fiml.sessions.backends import build_backends
from fiml.sessions.backends.base import ActiveTier, ArchiveTier, WriteLimits
from fiml.sessions.models import utcnow

__all__ = ["TieredStore"]

_NOT_INITIALIZED = "SessionStore.initialize() has not been called"


class TieredStore:
    """The settings, tiers and clock of a store (the base of ``SessionStore``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backend: ActiveTier | None = None,
        archive: ArchiveTier | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not callable(clock):
            raise InvalidInputError("clock", clock, "must be a function returning the time")
        self.settings = settings or Settings()
        self._backend = backend
        self._archive = archive
        self._clock = clock
        self._initialized = False

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.shutdown()

    def now(self) -> datetime:
        """The store's current time, from its clock."""
        now = self._clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise InvalidInputError("clock", now, "must return a timezone-aware datetime")
        return now

    def _own_time(self) -> datetime | None:
        """The store's time when its clock is not the system's (None when it is): what a
        tier judged by the system clock is judged again only then, which spares every
        listing on the system's time a second look at each entry."""
        return None if self._clock is utcnow else self.now()

    @property
    def backend(self) -> ActiveTier:
        """The active tier."""
        if self._backend is None:
            raise RuntimeError(_NOT_INITIALIZED)
        return self._backend

    @property
    def archive(self) -> ArchiveTier:
        """The archive tier (the same object as the active tier on SQL-only deployments)."""
        if self._archive is None:
            raise RuntimeError(_NOT_INITIALIZED)
        return self._archive

    @property
    def limits(self) -> WriteLimits:
        """The per-write limits from the settings."""
        return WriteLimits(
            max_queries=self.settings.session_max_queries_per_session,
            max_ttl=timedelta(hours=self.settings.session_max_ttl_hours),
            sliding_ttl=self.settings.session_sliding_ttl,
        )

    async def initialize(self) -> None:
        """Connect to the configured backends; SQLite migrates its schema, PostgreSQL's must be
        at head (SchemaOutdatedError / SchemaNewerError otherwise, see ``fiml db upgrade``)."""
        if self._initialized:
            return
        if self._backend is None or self._archive is None:
            self._backend, self._archive = build_backends(self.settings)
        try:
            await self._archive.initialize()
            if self._tiered:
                await self._backend.initialize()
        except BaseException:
            await self.shutdown()  # a tier that failed to start must not leak the other's pool
            raise
        self._initialized = True

    async def shutdown(self) -> None:
        """Close every connection; the store can be initialized again afterwards."""
        if self._backend is not None and self._tiered:
            await self._backend.close()
        if self._archive is not None:
            await self._archive.close()
        self._initialized = False

    @property
    def _tiered(self) -> bool:
        active: object = self._backend  # the same object as the archive on SQL alone
        return active is not self._archive

    @property
    def archiver(self) -> Archiver:
        """Moves finished sessions into the archive (see :mod:`fiml.sessions.archival`)."""
        return Archiver(
            self.backend, self.archive, record_facts=self.settings.session_enable_analytics
        )
