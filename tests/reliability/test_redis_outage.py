"""Redis crashes and comes back while writers are busy; a frozen Redis does not hang callers.

The Redis here is a private ``redis-server`` of the test's own (the shared one is never
touched), killed with SIGKILL in the middle of a workload of concurrent writers on one
store, then started again on the same port. What a user may rely on:

- while Redis is down every call fails at once with StorageUnavailableError naming redis,
  never hangs, never raises anything else;
- once it is back, the same store (no restart of the process) serves new sessions;
- sessions archived in PostgreSQL before the crash are intact and still listed;
- no session left in Redis is in a half-state (see ``redis_invariants``);
- without persistence the active sessions are gone, reported as not found; with an
  append-only file every acknowledged query is still there.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.core.errors import SessionNotFoundError, StorageUnavailableError
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.models import SessionStatus
from tests.conftest import require_postgres, reset_postgres
from tests.reliability.archive_checks import query
from tests.reliability.redis_invariants import session_violations
from tests.reliability.services import PrivateRedis, wait_until

WRITERS = 8
FAIL_FAST_SECONDS = 10
"""A call refused during an outage must return within this; it only tells a hang apart."""
MAX_OPERATIONS = 20_000
PHASE_SECONDS = 30


@dataclass
class Writer:
    """One concurrent writer: its sessions, what was acknowledged, what failed and how."""

    name: str
    phase: str = "before"
    session: UUID | None = None
    acked: dict[UUID, list[UUID]] = field(default_factory=dict)
    unsure: dict[UUID, set[UUID]] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    slowest_failure: float = 0.0
    unexpected: list[str] = field(default_factory=list)

    async def run(self, store: SessionStore, stop: asyncio.Event) -> None:
        """Create a session, then track queries and set context in it, until ``stop``."""
        for n in range(MAX_OPERATIONS):
            if stop.is_set():
                return
            phase, started = self.phase, time.perf_counter()
            outcome = await self._outcome(store, n)
            # An operation is counted in a phase only if it started and ended in it.
            self.outcomes[phase if self.phase == phase else "boundary", outcome] += 1
            if outcome.startswith("unavailable"):
                self.slowest_failure = max(self.slowest_failure, time.perf_counter() - started)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.002)

    async def _outcome(self, store: SessionStore, n: int) -> str:
        try:
            await self._step(store, n)
        except StorageUnavailableError as exc:
            return f"unavailable:{exc.backend}"
        except SessionNotFoundError:
            self.session = None
            return "session lost"
        except Exception as exc:
            self.unexpected.append(f"{self.phase}: {type(exc).__name__}: {exc}")
            return "unexpected"
        return "ok"

    async def _step(self, store: SessionStore, n: int) -> None:
        if self.session is None:
            created = await store.create_session(["AAPL", "BTC"], "comparative", user_id=self.name)
            self.session = created.id
            self.acked[created.id], self.unsure[created.id] = [], set()
        elif n % 4 == 3:
            await store.update_state(self.session, context={f"k{n}": n})
        else:
            record: QueryRecord = query(n)
            self.unsure[self.session].add(record.id)
            await store.append_query(self.session, record)
            self.unsure[self.session].discard(record.id)
            self.acked[self.session].append(record.id)

    def count(self, phase: str, outcome: str) -> int:
        """How many operations of ``phase`` ended with ``outcome``."""
        return self.outcomes[phase, outcome]


class Workload:
    """Concurrent writers on one store, switched from phase to phase by the test."""

    def __init__(self, store: SessionStore, writers: int) -> None:
        self.writers = [Writer(f"w{i}") for i in range(writers)]
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(w.run(store, self._stop)) for w in self.writers]

    def enter(self, phase: str) -> None:
        """Count what happens from now on under ``phase``."""
        for writer in self.writers:
            writer.phase = phase

    async def until_each(self, phase: str, outcome: str, times: int) -> None:
        """Wait until every writer has had ``outcome`` ``times`` times in ``phase``."""

        async def done() -> bool:
            return all(w.count(phase, outcome) >= times for w in self.writers)

        await wait_until(done, seconds=PHASE_SECONDS)

    async def stop(self) -> None:
        """Stop every writer after its current operation."""
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def archived_before_the_crash(store: SessionStore) -> dict[UUID, dict[str, Any]]:
    """Three sessions with queries and context, closed and archived to PostgreSQL."""
    ids = []
    for i in range(3):
        session = await store.create_session(["MSFT"], "equity", user_id="archivist")
        for n in range(i + 2):
            await store.append_query(session.id, query(n))
        await store.update_state(session.id, context={"finding": f"#{i}"})
        await store.close_session(session.id)
        ids.append(session.id)
    assert (await store.cleanup_expired_sessions()).archived == 3
    return {sid: await full(store, sid) for sid in ids}


async def full(store: SessionStore, session_id: UUID) -> dict[str, Any]:
    session = await store.get_session(session_id, history_limit=ALL_QUERIES)
    assert session is not None
    return {**session.to_dict(), "status": session.status.value}


@pytest.fixture
async def pg() -> str:
    """The test PostgreSQL database, emptied."""
    url = await require_postgres()
    await reset_postgres(url)
    return url


@pytest.mark.parametrize("persistence", ["none", "appendonly"])
@pytest.mark.timeout(180)
async def test_redis_killed_mid_workload_and_restarted(
    tmp_path: Path, pg: str, persistence: str
) -> None:
    async with PrivateRedis(tmp_path, appendonly=persistence == "appendonly") as server:
        settings = Settings(database_url=pg, redis_url=server.url)
        raw = redis.Redis.from_url(server.url, decode_responses=True)
        async with SessionStore(settings) as store:
            archived = await archived_before_the_crash(store)
            work = Workload(store, WRITERS)
            try:
                await work.until_each("before", "ok", 20)

                await server.kill()
                work.enter("outage")
                await work.until_each("outage", "unavailable:redis", 3)

                work.enter("restarting")
                await server.start()
                work.enter("after")
                await work.until_each("after", "ok", 20)
            finally:
                await work.stop()

            unexpected = [u for w in work.writers for u in w.unexpected]
            assert unexpected == []
            assert max(w.slowest_failure for w in work.writers) < FAIL_FAST_SECONDS
            outage = Counter(o for w in work.writers for (p, o) in w.outcomes if p == "outage")
            assert set(outage) == {"unavailable:redis"}, outage

            for sid, before in archived.items():
                assert await full(store, sid) == {**before, "last_accessed_at": ANY_TIME}
            listed = await store.list_user_sessions("archivist", include_archived=True)
            assert {s.id for s in listed} == set(archived)

            await check_sessions(store, work, survived=persistence == "appendonly")
            violations = await session_violations(raw)
            assert violations == []
        await raw.aclose()


class _AnyTime:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)


ANY_TIME: Any = _AnyTime()


async def check_sessions(store: SessionStore, work: Workload, *, survived: bool) -> None:
    """Without persistence: older sessions are not found, newer ones hold exactly what was
    acknowledged. With it: every session holds every acknowledged query, in order, plus at
    most the queries whose calls failed during the outage."""
    for writer in work.writers:
        lost = sum(n for (_, outcome), n in writer.outcomes.items() if outcome == "session lost")
        assert lost == (0 if survived else 1), writer.outcomes
        for sid, acked in writer.acked.items():
            session = await store.get_session(sid, history_limit=ALL_QUERIES)
            if session is None:
                assert not survived
                continue
            assert session.status is SessionStatus.ACTIVE
            stored = [q.id for q in session.state.history.queries]
            assert [q for q in stored if q in set(acked)] == acked
            assert set(stored) - set(acked) <= writer.unsure[sid]
            assert session.state.history.total_queries == len(stored)
        alive = [sid for sid in writer.acked if await store.get_session(sid) is not None]
        assert len(alive) == (len(writer.acked) if survived else 1)


async def test_a_frozen_redis_fails_calls_instead_of_hanging(tmp_path: Path, pg: str) -> None:
    async with (
        PrivateRedis(tmp_path) as server,
        SessionStore(Settings(database_url=pg, redis_url=server.url)) as store,
    ):
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        server.freeze()
        try:
            started = time.perf_counter()
            with pytest.raises(StorageUnavailableError) as caught:
                async with asyncio.timeout(3 * FAIL_FAST_SECONDS):
                    await store.append_query(session.id, query(1))
            waited = time.perf_counter() - started
        finally:
            server.thaw()
        assert caught.value.backend == "redis"
        assert waited < FAIL_FAST_SECONDS
        await store.append_query(session.id, query(2))
        loaded = await store.get_session(session.id, history_limit=ALL_QUERIES)
        assert loaded is not None
        # The frozen call's query may have landed after all: an ambiguous outcome.
        assert loaded.state.history.total_queries in (1, 2)
