"""Watching subscribed sessions for changes, and telling their subscribers.

The server may be one of many processes sharing a store, and a write may come through any
of them, so a change is found by reading: every ``resource_poll_seconds`` the watch reads
the version of each session somebody is subscribed to here (one read per distinct session,
a few at a time: the store has no batched read of versions) and tells each subscriber whose
session moved. A write made through this process wakes the watch at once
(:meth:`SessionWatch.poke`), so its subscribers need not wait for the next round.

Before each notice the subscriber's right to read the session is asked again
(:func:`~fiml.sessions.sharing.readable_session`): a revoked share, or a deleted session,
ends that subscription instead of being told. The polling task runs only while there are
subscriptions, and ends with the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import anyio

from fiml.core.errors import FimlError, InvalidInputError, SessionNotFoundError
from fiml.sessions.sharing import readable_session
from fiml.sessions.store import SessionStore

__all__ = [
    "PING_TIMEOUT_SECONDS",
    "READS_AT_ONCE",
    "NotListeningYet",
    "SessionWatch",
    "Subscriber",
    "session_uri",
]

logger = logging.getLogger(__name__)

READS_AT_ONCE = 16
"""Session reads one polling round keeps in flight."""

PING_TIMEOUT_SECONDS = 10.0
"""How long a connection's client has to answer the liveness ping before it is dropped."""


class NotListeningYet(Exception):
    """Raised by a subscriber's ``send`` whose client is there but cannot be told yet (a
    listen stream checked, its listener not registered): the notice is kept for the next
    round rather than lost, and the subscriber is not dropped."""


def session_uri(session_id: UUID) -> str:
    """The ``session://`` resource URI of a session."""
    return f"session://{session_id}"


@dataclass(eq=False)
class Subscriber:
    """One connection's subscriptions (a 2025 client), or one listen stream's (2026).

    ``send`` delivers the update of a URI and raises when the client is gone
    (:class:`NotListeningYet` when it cannot be told yet); ``alive``,
    when given, is asked each round whether the client is still there (a connection that
    closed without unsubscribing is otherwise never noticed).
    """

    user_id: str
    send: Callable[[str], Awaitable[None]]
    alive: Callable[[], Awaitable[bool]] | None = None
    versions: dict[UUID, int] = field(default_factory=dict)
    """Each subscribed session and the version last told (or seen at subscribing)."""


class SessionWatch:
    """The subscribers of this process and the task that polls for their sessions."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.poll_seconds = store.settings.resource_poll_seconds
        self.max_per_subscriber = store.settings.max_subscriptions_per_connection
        self._subscribers: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def polling(self) -> bool:
        """True while the polling task runs."""
        return self._task is not None and not self._task.done()

    def has(self, subscriber: Subscriber) -> bool:
        """Whether ``subscriber`` has subscriptions here."""
        return subscriber in self._subscribers

    def watches(self, session_id: UUID) -> bool:
        """Whether some subscriber here is subscribed to ``session_id``."""
        return any(session_id in s.versions for s in self._subscribers)

    async def subscribe(self, subscriber: Subscriber, session_id: UUID, *, field: str) -> None:
        """Subscribe ``subscriber`` to a session it may read; SessionNotFoundError (as for
        an unknown id) otherwise, and InvalidInputError naming ``field`` past the cap."""
        session = await readable_session(
            self.store, subscriber.user_id, session_id, history_limit=0
        )
        full = len(subscriber.versions) >= self.max_per_subscriber
        if full and session_id not in subscriber.versions:
            raise InvalidInputError(
                field,
                session_uri(session_id),
                f"at most {self.max_per_subscriber} subscriptions per connection",
            )
        subscriber.versions[session_id] = session.version
        self._subscribers.add(subscriber)
        if not self.polling:
            self._task = asyncio.create_task(self._poll(), name="fiml-session-watch")

    def unsubscribe(self, subscriber: Subscriber, session_id: UUID) -> None:
        """Stop telling ``subscriber`` about ``session_id`` (nothing if it was not)."""
        subscriber.versions.pop(session_id, None)
        if not subscriber.versions:
            self.drop(subscriber)

    def drop(self, subscriber: Subscriber) -> None:
        """Forget ``subscriber`` and every subscription it had."""
        self._subscribers.discard(subscriber)
        if not self._subscribers:
            self._wake.set()  # the polling task ends now rather than after its sleep

    def poke(self, session_id: UUID) -> None:
        """A write to ``session_id`` went through this process: poll now if it is watched."""
        if self.watches(session_id):
            self._wake.set()

    async def wait_idle(self) -> None:
        """Return once no polling task runs."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _poll(self) -> None:
        while self._subscribers:
            # Woken early by a write through this process, or by the last subscriber leaving.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            if not self._subscribers:
                break
            try:
                await self.poll_once()
            except Exception:  # a failed round (the store unreachable) is retried next round
                logger.exception("polling subscribed sessions failed; retrying")

    async def poll_once(self) -> None:
        """One round: drop gone clients, read each watched session's version, tell those
        subscribed to a session that moved."""
        await self._drop_gone()
        current: dict[UUID, int | None] = {}
        limiter = anyio.CapacityLimiter(READS_AT_ONCE)

        async def read(session_id: UUID) -> None:
            async with limiter:
                session = await self.store.get_session(session_id, history_limit=0)
            current[session_id] = None if session is None else session.version

        watched = {sid for s in self._subscribers for sid in s.versions}
        async with anyio.create_task_group() as group:
            for session_id in watched:
                group.start_soon(read, session_id)
        for subscriber in list(self._subscribers):
            for session_id, seen in list(subscriber.versions.items()):
                if current.get(session_id, seen) != seen:
                    await self._tell(subscriber, session_id, current[session_id])

    async def _tell(self, subscriber: Subscriber, session_id: UUID, version: int | None) -> None:
        try:
            await readable_session(self.store, subscriber.user_id, session_id, history_limit=0)
        except SessionNotFoundError:  # unshared or deleted since: no more notices
            self.unsubscribe(subscriber, session_id)
            return
        except FimlError:
            logger.exception("checking a subscriber's access failed; retrying next round")
            return
        if session_id not in subscriber.versions:  # unsubscribed while its access was read
            return
        try:
            await subscriber.send(session_uri(session_id))
        except NotListeningYet:  # the version told stays the old one: told next round
            return
        except Exception:  # the client went away: its connection's transport is closed
            self.drop(subscriber)
            return
        if session_id in subscriber.versions:  # not unsubscribed while it was told
            subscriber.versions[session_id] = version if version is not None else -1

    async def _drop_gone(self) -> None:
        async def check(subscriber: Subscriber) -> None:
            assert subscriber.alive is not None
            answered = False
            with anyio.move_on_after(PING_TIMEOUT_SECONDS):
                try:
                    answered = await subscriber.alive()
                except Exception:  # a closed connection fails the ping
                    answered = False
            if not answered:
                self.drop(subscriber)

        async with anyio.create_task_group() as group:
            for subscriber in list(self._subscribers):
                if subscriber.alive is not None:
                    group.start_soon(check, subscriber)
