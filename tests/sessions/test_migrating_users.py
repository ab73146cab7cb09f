"""What users of the original implementation relied on keeps working.

``Session(...)`` without ``expires_at`` gets the default TTL from its creation, and
``update_session`` with an ``expires_at`` at or before now ends the session now (how
callers of the original ended one early); a future expiry past the maximum TTL is still
refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fiml.core.errors import InvalidTTLError, SessionExpiredError
from fiml.sessions import ALL_QUERIES, QueryRecord, Session, SessionStore, SessionType
from fiml.sessions.models import SessionStatus, utcnow


def test_a_session_built_without_expires_at_gets_the_default_ttl() -> None:
    created = datetime(2026, 3, 1, 12, tzinfo=UTC)

    session = Session(type=SessionType.EQUITY, assets=["AAPL"], created_at=created)
    fresh = Session(type=SessionType.EQUITY, assets=["AAPL"])

    assert session.expires_at == created + timedelta(hours=Session.DEFAULT_TTL_HOURS)
    assert fresh.expires_at - fresh.created_at == timedelta(hours=Session.DEFAULT_TTL_HOURS)
    assert Session.from_dict(fresh.to_dict()).expires_at == fresh.expires_at


def test_the_default_ttl_follows_a_naive_creation_time_read_as_utc() -> None:
    session = Session(type=SessionType.EQUITY, assets=["AAPL"], created_at=datetime(2026, 3, 1))
    assert session.expires_at == datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize("ago", [timedelta(0), timedelta(seconds=1), timedelta(days=400)])
async def test_an_expiry_in_the_past_ends_the_session_now(
    store: SessionStore, ago: timedelta
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    mine = await store.get_session(session.id)
    assert mine is not None
    mine.add_query(QueryRecord(query_type="price"))
    mine.state.update_context("last", "words")
    mine.expires_at = utcnow() - ago

    saved = await store.update_session(mine.id, mine)

    stored = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert stored is not None
    assert stored.status is SessionStatus.EXPIRED
    assert stored.closed_at is None
    assert session.created_at < stored.expires_at <= utcnow()
    assert saved.expires_at == stored.expires_at
    assert stored.state.context == {"last": "words"}
    assert stored.state.history.total_queries == 1
    with pytest.raises(SessionExpiredError):
        await store.update_state(session.id, context={"after": "the end"})
    assert (await store.cleanup_expired_sessions()).archived == 1


async def test_an_earlier_future_expiry_is_kept(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=24)
    mine = await store.get_session(session.id)
    assert mine is not None
    sooner = session.created_at + timedelta(hours=2)
    mine.expires_at = sooner

    await store.update_session(mine.id, mine)

    stored = await store.get_session(session.id)
    assert stored is not None
    assert stored.expires_at == sooner
    assert stored.status is SessionStatus.ACTIVE


async def test_a_future_expiry_past_the_maximum_ttl_is_still_refused(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    mine = await store.get_session(session.id)
    assert mine is not None
    mine.expires_at = utcnow() + timedelta(hours=store.settings.session_max_ttl_hours + 1)
    mine.state.update_context("refused", "with it")

    with pytest.raises(InvalidTTLError):
        await store.update_session(mine.id, mine)

    stored = await store.get_session(session.id)
    assert stored is not None
    assert stored.expires_at == session.expires_at
    assert stored.state.context == {}
    assert stored.version == session.version
