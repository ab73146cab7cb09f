"""FIML_SESSION_SLIDING_TTL on every deployment: each write slides a session's expiry, never
past the maximum TTL from its creation, and cleanup archives by the slid expiry.

Off by default. The rules' own cases (``test_write_rules.py``) pin the arithmetic; these
tests go through the store and cleanup, whose expiry index (SQL's ``expires_at`` index,
Redis's sorted set) must follow the expiry the write moved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fiml.core.errors import SessionExpiredError
from fiml.sessions import SessionStore
from tests.clock import MovableClock
from tests.conftest import settings_for

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@pytest.fixture
async def sliding(
    store_kind: str, tmp_path: Path, clock: MovableClock
) -> AsyncIterator[SessionStore]:
    """A store whose sessions slide, with a three-hour maximum TTL."""
    settings = await settings_for(
        store_kind, tmp_path, session_sliding_ttl=True, session_max_ttl_hours=3
    )
    async with SessionStore(settings, clock=clock) as store:
        yield store


async def _expiry(store: SessionStore, session_id: object) -> datetime:
    session = await store.get_session(str(session_id), history_limit=0)
    assert session is not None
    return session.expires_at


async def test_each_write_slides_the_expiry_and_cleanup_follows(
    sliding: SessionStore, clock: MovableClock
) -> None:
    store = sliding
    session = await store.create_session(["AAPL"], "equity", user_id="u", ttl_hours=1)
    created, first_expiry = session.created_at, session.expires_at
    clock.move(50 * MINUTE)
    before = clock()
    await store.update_state(session.id, context={"step": 1})
    after = clock()
    slid = await _expiry(store, session.id)
    # later by the time since the last write (the creation): 1 h ahead of the write
    assert first_expiry + (before - created) <= slid <= first_expiry + (after - created)

    clock.move(30 * MINUTE)  # past the first expiry, before the slid one
    report = await store.cleanup_expired_sessions()
    assert report.archived == 0
    await store.update_state(session.id, context={"step": 2})  # still takes writes

    clock.move(30 * MINUTE)  # 110 min: slid to about 2 h 50
    await store.update_state(session.id, context={"step": 3})
    clock.move(30 * MINUTE)  # 140 min: 3 h 20 would be past the cap
    await store.update_state(session.id, context={"step": 4})
    assert await _expiry(store, session.id) == created + 3 * HOUR  # capped from creation

    clock.move(created + 3 * HOUR + MINUTE - clock())
    with pytest.raises(SessionExpiredError):
        await store.update_state(session.id, context={"step": 5})
    report = await store.cleanup_expired_sessions()
    assert report.archived == 1


async def test_extensions_count_towards_the_slide(
    sliding: SessionStore, clock: MovableClock
) -> None:
    store = sliding
    session = await store.create_session(["AAPL"], "equity", user_id="u", ttl_hours=1)
    extended = await store.extend_session(session.id, 0.5)
    assert extended.expires_at >= session.expires_at + 30 * MINUTE
    clock.move(20 * MINUTE)
    await store.update_state(session.id, context={"k": "v"})
    # the extension's half hour stays ahead of the write, with the TTL
    assert await _expiry(store, session.id) >= session.created_at + 20 * MINUTE + 90 * MINUTE


async def test_without_the_setting_writes_leave_the_expiry(
    settings: object, store: SessionStore, clock: MovableClock
) -> None:
    assert store.settings.session_sliding_ttl is False
    session = await store.create_session(["AAPL"], "equity", user_id="u", ttl_hours=1)
    clock.move(50 * MINUTE)
    await store.update_state(session.id, context={"k": "v"})
    assert await _expiry(store, session.id) == session.expires_at
    clock.move(11 * MINUTE)
    assert (await store.cleanup_expired_sessions()).archived == 1
