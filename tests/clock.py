"""A clock for ``SessionStore(clock=...)`` that a test moves instead of waiting."""

from __future__ import annotations

from datetime import datetime, timedelta

from fiml.sessions.models import utcnow


class MovableClock:
    """The system's time shifted by however far the test has moved it, so that time still
    passes (creation order, access times) while a test jumps over a TTL in no time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def move(self, by: timedelta) -> None:
        """Move the clock ``by`` (forward, or back before anything happens)."""
        self.offset += by

    def set_to(self, moment: datetime) -> None:
        """Move the clock to ``moment`` (time then passes from there)."""
        self.offset = moment - utcnow()
