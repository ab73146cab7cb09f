"""The spec's own test module: ``pytest tests/test_sessions.py -v`` and
``pytest tests/test_sessions.py::TestSessionIntegration -v -s``.

The three classes the spec names: the models, the store on every deployment the conftest
offers (sqlite, postgres, redis+postgres), and the spec's usage example run as written,
followed by expiry, cleanup and analytics. The detailed suites live in ``tests/sessions``
and ``tests/analytics``; this module is the spec's walk through them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fiml.core.errors import (
    ContextValueError,
    InvalidSessionIdError,
    SessionArchivedError,
    SessionClosedError,
    SessionExpiredError,
)
from fiml.sessions import SessionStore
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.models import (
    AnalysisHistory,
    QueryRecord,
    Session,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionType,
    utcnow,
)

INSTANT_TTL_HOURS = 1e-9
"""A TTL of 3.6 microseconds: the session has expired by the time the store returns it."""


def _session(**fields: object) -> Session:
    now = utcnow()
    values: dict[str, object] = {
        "user_id": "u",
        "type": SessionType.EQUITY,
        "assets": ["aapl"],
        "created_at": now - timedelta(hours=2),
        "expires_at": now + timedelta(hours=1),
    }
    values.update(fields)
    return Session.model_validate(values)


class TestSessionModels:
    """Query records, the history, the state, expiry and serialization."""

    def test_query_record_creation(self) -> None:
        query = QueryRecord(
            query_type="price",
            parameters={"symbol": "AAPL"},
            result_summary="AAPL: $175.43 (+2.3%)",
            execution_time_ms=12.5,
        )

        assert query.timestamp.tzinfo is not None
        assert query.timestamp <= utcnow()
        assert (query.cache_hit, query.parameters) == (False, {"symbol": "AAPL"})
        assert QueryRecord(query_type="price").id != query.id

    def test_analysis_history_tracking(self) -> None:
        history = AnalysisHistory()
        for kind, hit in [("price", True), ("news", False), ("price", False), ("price", True)]:
            history.add_query(QueryRecord(query_type=kind, cache_hit=hit))

        assert history.total_queries == 4
        assert history.cache_hit_rate == 0.5
        assert history.get_query_types_summary() == {"price": 3, "news": 1}
        assert [q.query_type for q in history.get_recent_queries(2)] == ["price", "price"]
        assert history.first_query_at == history.queries[0].timestamp
        assert history.last_query_at == history.queries[-1].timestamp
        assert AnalysisHistory().cache_hit_rate == 0.0

    def test_session_state_management(self) -> None:
        state = SessionState()
        state.update_context("preference", "detailed")
        state.set_preference("currency", "EUR")
        state.store_intermediate_result("pe", {"AAPL": 28.1})

        assert state.get_context("preference") == "detailed"
        assert state.get_context("missing", "fallback") == "fallback"
        assert state.get_preference("currency") == "EUR"
        assert state.get_intermediate_result("pe") == {"AAPL": 28.1}
        with pytest.raises(ContextValueError):
            state.update_context("when", datetime.now(UTC))  # not JSON
        assert "when" not in state.context

    def test_expiration_logic(self) -> None:
        running = _session()
        expired = _session(expires_at=utcnow() - timedelta(minutes=1))
        closed = _session(closed_at=utcnow())

        assert (running.is_expired, running.status) == (False, SessionStatus.ACTIVE)
        assert running.time_remaining > timedelta(minutes=59)
        assert (expired.is_expired, expired.status) == (True, SessionStatus.EXPIRED)
        assert expired.time_remaining == timedelta(0)
        assert closed.status == SessionStatus.CLOSED
        before = running.expires_at
        running.extend(2)
        assert running.expires_at == before + timedelta(hours=2)

    def test_serialization(self) -> None:
        session = _session(tags=["q3"])
        session.add_query(QueryRecord(query_type="price", parameters={"symbol": "AAPL"}))
        session.state.update_context("goal", "compare margins")

        data = session.to_dict()
        again = Session.from_dict(json.loads(json.dumps(data)))

        assert again == session
        assert data["id"] == str(session.id) and data["assets"] == ["AAPL"]
        summary = SessionSummary.from_session(session)
        assert (summary.id, summary.total_queries, summary.status) == (
            session.id,
            1,
            SessionStatus.ACTIVE,
        )


class TestSessionStore:
    """The store's operations, on every deployment (the ``store`` fixture)."""

    async def test_crud_operations(self, store: SessionStore) -> None:
        created = await store.create_session(["AAPL", "MSFT"], SessionType.EQUITY, user_id="u")
        created.add_query(QueryRecord(query_type="price", parameters={"symbol": "AAPL"}))
        created.state.update_context("focus", "margins")
        await store.update_session(created.id, created)

        stored = await store.get_session(created.id)
        assert stored is not None
        assert (stored.assets, stored.user_id, stored.type) == (
            ["AAPL", "MSFT"],
            "u",
            SessionType.EQUITY,
        )
        assert stored.state.history.total_queries == 1
        assert stored.state.get_context("focus") == "margins"

        assert await store.delete_session(created.id) is True
        assert await store.get_session(created.id) is None
        assert await store.delete_session(created.id) is False

    async def test_session_retrieval(self, store: SessionStore) -> None:
        created = await store.create_session(["BTC"], "crypto", user_id="u", tags=["watch"])

        by_text = await store.get_session(str(created.id))
        assert by_text is not None and by_text.id == created.id
        assert by_text.tags == ["watch"]
        assert await store.get_session("00000000-0000-4000-8000-000000000000") is None
        with pytest.raises(InvalidSessionIdError):
            await store.get_session("not-a-session-id")

    async def test_archival(self, store: SessionStore) -> None:
        created = await store.create_session(["SPY"], SessionType.MACRO, user_id="u")
        await store.append_query(created.id, QueryRecord(query_type="price"))

        assert await store.archive_session(created.id) is True
        archived = await store.get_session(created.id)
        assert archived is not None and archived.is_archived
        assert archived.state.history.total_queries == 1
        with pytest.raises(SessionArchivedError):
            await store.append_query(created.id, QueryRecord(query_type="price"))
        assert await store.archive_session(created.id) is False

    async def test_cleanup(self, store: SessionStore) -> None:
        expired = await store.create_session(["ETH"], "crypto", ttl_hours=INSTANT_TTL_HOURS)
        closed = await store.create_session(["BTC"], "crypto")
        await store.close_session(closed.id)
        running = await store.create_session(["AAPL"], "equity")

        await store.cleanup_expired_sessions()
        await store.cleanup_expired_sessions()  # nothing left to do

        for gone in (expired, closed):
            stored = await store.get_session(gone.id)
            assert stored is not None and stored.is_archived
        still = await store.get_session(running.id)
        assert still is not None and not still.is_archived

    async def test_user_session_listing(self, store: SessionStore) -> None:
        first = await store.create_session(["AAPL"], "equity", user_id="alice")
        second = await store.create_session(["BTC"], "crypto", user_id="alice")
        await store.create_session(["TSLA"], "equity", user_id="bob")
        await store.archive_session(first.id)

        active = await store.list_user_sessions("alice")
        everything = await store.list_user_sessions("alice", include_archived=True)

        assert [s.id for s in active] == [second.id]
        assert {s.id for s in everything} == {first.id, second.id}
        assert everything[0].id == second.id  # newest first


class TestSessionIntegration:
    """The spec's usage example as written, then the rest of the lifecycle."""

    async def test_full_lifecycle(self, store: SessionStore) -> None:
        session_store = store

        # Create session
        session = await session_store.create_session(
            assets=["AAPL", "GOOGL"],
            session_type=SessionType.COMPARATIVE,
            user_id="analyst_001",
            ttl_hours=24,
        )

        # Track queries
        query = QueryRecord(
            query_type="price",
            parameters={"symbol": "AAPL"},
            result_summary="AAPL: $175.43 (+2.3%)",
        )
        session.add_query(query)

        # Store context
        session.state.update_context("preference", "detailed")

        # Save
        await session_store.update_session(session.id, session)

        # Later retrieval
        retrieved = await session_store.get_session(session.id)
        assert retrieved is not None
        print(f"Total queries: {retrieved.state.history.total_queries}")

        assert retrieved.state.history.total_queries == 1
        assert retrieved.state.get_context("preference") == "detailed"
        assert retrieved.state.history.queries[0].result_summary == "AAPL: $175.43 (+2.3%)"
        assert retrieved.assets == ["AAPL", "GOOGL"]
        assert retrieved.type is SessionType.COMPARATIVE
        assert retrieved.user_id == "analyst_001"

        # Multi-query workflow: the context accumulates across saves.
        retrieved.add_query(QueryRecord(query_type="price", parameters={"symbol": "GOOGL"}))
        retrieved.state.update_context("compared", ["AAPL", "GOOGL"])
        await session_store.update_session(retrieved.id, retrieved)
        extended = await session_store.extend_session(session.id, 1)
        assert extended.expires_at == session.expires_at + timedelta(hours=1)
        again = await session_store.get_session(session.id)
        assert again is not None
        assert again.state.history.total_queries == 2
        assert again.state.context == {"preference": "detailed", "compared": ["AAPL", "GOOGL"]}
        print(f"Total queries after the comparison: {again.state.history.total_queries}")

        # Expiry: a session past its TTL stays readable but refuses writes.
        left = await session_store.create_session(
            ["MSFT"], SessionType.EQUITY, user_id="analyst_001", ttl_hours=INSTANT_TTL_HOURS
        )
        expired = await session_store.get_session(left.id)
        assert expired is not None and expired.status == SessionStatus.EXPIRED
        with pytest.raises(SessionExpiredError):
            await session_store.append_query(left.id, QueryRecord(query_type="price"))

        # Closing finishes the analysis; cleanup archives both.
        await session_store.close_session(session.id)
        with pytest.raises(SessionClosedError):
            await session_store.append_query(session.id, QueryRecord(query_type="price"))
        await session_store.cleanup_expired_sessions()
        for sid in (session.id, left.id):
            archived = await session_store.get_session(sid)
            assert archived is not None and archived.is_archived

        # Analytics over what was archived (facts recorded by cleanup or here).
        analytics = SessionAnalytics(session_store)
        await analytics.record_archived_metrics()
        stats = await analytics.get_session_stats(user_id="analyst_001")
        print(f"Analytics: {json.dumps(stats, indent=2)}")

        assert (stats["user_id"], stats["period_days"]) == ("analyst_001", 30.0)
        assert (stats["archived_sessions"], stats["active_sessions"]) == (2, 0)
        assert stats["total_queries"] == 2
        assert stats["avg_queries_per_session"] == 1.0
        assert stats["abandonment_rate"] == 0.5  # the expired session, with no query
        assert stats["query_type_distribution"] == {"price": 2}
        assert stats["session_type_breakdown"] == {"comparative": 1, "equity": 1}
        assert stats["top_assets"] == [
            {"asset": "AAPL", "count": 1},
            {"asset": "GOOGL", "count": 1},
            {"asset": "MSFT", "count": 1},
        ]
        summary = await analytics.get_user_session_summary("analyst_001")
        assert {r["session_id"]: r["abandoned"] for r in summary["recent_sessions"]} == {
            str(session.id): False,
            str(left.id): True,
        }
