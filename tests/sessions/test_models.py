"""The session models on their own: history counters, state, lifecycle, serialization."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest
from pydantic import ValidationError

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions.limits import MAX_PARAMETERS_BYTES
from fiml.sessions.models import (
    MAX_STATE_KEYS,
    AnalysisHistory,
    QueryRecord,
    Session,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionType,
    queries_from_json,
    queries_from_rows,
    session_from_store,
    utcnow,
)


def make_session(**overrides: object) -> Session:
    now = utcnow()
    fields: dict[str, object] = {
        "type": SessionType.EQUITY,
        "assets": ["AAPL"],
        "expires_at": now + timedelta(hours=1),
    }
    fields.update(overrides)
    return Session(**fields)


def test_history_counts_every_query() -> None:
    history = AnalysisHistory()
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = early + timedelta(minutes=5)
    history.add_query(QueryRecord(query_type="price", timestamp=late, cache_hit=True))
    history.add_query(QueryRecord(query_type="news", timestamp=early))
    history.add_query(QueryRecord(query_type="price"))
    assert history.total_queries == 3
    assert history.cache_hits == 1
    assert history.cache_hit_rate == pytest.approx(1 / 3)
    assert history.get_query_types_summary() == {"price": 2, "news": 1}
    assert history.first_query_at == early
    assert history.last_query_at is not None and history.last_query_at > late
    assert [q.query_type for q in history.get_recent_queries(2)] == ["news", "price"]
    assert history.get_recent_queries(0) == []


def test_empty_history_has_zero_hit_rate() -> None:
    assert AnalysisHistory().cache_hit_rate == 0.0


def test_query_record_rejects_bad_fields() -> None:
    with pytest.raises(ValidationError):
        QueryRecord(query_type="")
    with pytest.raises(ValidationError):
        QueryRecord(query_type="price", execution_time_ms=-1)
    with pytest.raises(ValidationError):
        QueryRecord(query_type="price", execution_time_ms=float("inf"))
    with pytest.raises(ValidationError, match="not JSON-serializable"):
        QueryRecord(query_type="price", parameters={"when": object()})
    naive = QueryRecord(query_type="price", timestamp=datetime(2026, 1, 1))
    assert naive.timestamp.tzinfo is UTC


def test_state_sections_hold_json_copies() -> None:
    state = SessionState()
    value = {"peers": ["MSFT"]}
    state.update_context("focus", value)
    value["peers"].append("GOOGL")
    assert state.get_context("focus") == {"peers": ["MSFT"]}
    assert state.get_context("missing", "default") == "default"
    state.store_intermediate_result("pe", 28.4)
    assert state.get_intermediate_result("pe") == 28.4
    state.set_preference("style", "detailed")
    assert state.get_preference("style") == "detailed"


def test_state_rejects_what_it_cannot_store() -> None:
    state = SessionState()
    with pytest.raises(ContextValueError) as caught:
        state.update_context("k", {1, 2})
    assert caught.value.field == "context['k']"
    with pytest.raises(ContextValueError):
        state.update_context("", 1)
    with pytest.raises(ContextValueError):
        state.update_context("k", float("inf"))
    for i in range(MAX_STATE_KEYS):
        state.update_context(f"k{i}", i)
    with pytest.raises(ContextValueError):
        state.update_context("one-too-many", 1)
    state.update_context("k0", "replacing is fine")
    assert len(state.context) == MAX_STATE_KEYS


def test_session_lifecycle_properties() -> None:
    session = make_session()
    assert session.status is SessionStatus.ACTIVE
    assert not session.is_expired
    assert timedelta(minutes=59) < session.time_remaining <= timedelta(hours=1)
    before = session.expires_at
    session.extend(2)
    assert session.expires_at - before == timedelta(hours=2)
    with pytest.raises(InvalidInputError):
        session.extend(0)

    past = make_session(
        created_at=utcnow() - timedelta(hours=3),
        last_accessed_at=utcnow() - timedelta(hours=2),
        expires_at=utcnow() - timedelta(hours=1),
    )
    assert past.is_expired
    assert past.status is SessionStatus.EXPIRED
    assert past.time_remaining == timedelta(0)
    assert timedelta(minutes=59) < past.duration < timedelta(hours=1, minutes=1)

    closed = make_session(closed_at=utcnow())
    assert closed.status is SessionStatus.CLOSED
    archived = make_session(closed_at=utcnow(), archived_at=utcnow())
    assert archived.status is SessionStatus.ARCHIVED


def test_add_query_touches_session() -> None:
    session = make_session(last_accessed_at=utcnow() - timedelta(minutes=10))
    before = session.last_accessed_at
    session.add_query(QueryRecord(query_type="price"))
    assert session.last_accessed_at > before
    assert session.state.history.total_queries == 1


def test_session_validates_assets_and_tags() -> None:
    session = make_session(assets=[" aapl ", "AAPL", "msft"], tags=["x", "x", "y"])
    assert session.assets == ["AAPL", "MSFT"]
    assert session.tags == ["x", "y"]
    with pytest.raises((InvalidInputError, ValidationError)):
        make_session(assets=[])
    with pytest.raises((InvalidInputError, ValidationError)):
        make_session(type="unknown")


def test_dict_round_trip() -> None:
    session = make_session(user_id="u1", tags=["t"])
    session.add_query(QueryRecord(query_type="price", parameters={"symbol": "AAPL"}))
    session.state.update_context("k", [1, 2])
    data = session.to_dict()
    assert data["id"] == str(session.id)
    again = Session.from_dict(data)
    assert again == session
    assert again.state.history.queries[0].parameters == {"symbol": "AAPL"}


def test_summary_from_session() -> None:
    session = make_session(user_id="u1", tags=["t"])
    session.add_query(QueryRecord(query_type="price"))
    summary = SessionSummary.from_session(session)
    assert summary.id == session.id
    assert summary.total_queries == 1
    assert summary.status is SessionStatus.ACTIVE
    assert summary.tags == ["t"]
    assert summary.type is SessionType.EQUITY
    assert not summary.is_expired and not summary.is_archived


def test_stored_data_is_read_as_written_without_rechecking_input() -> None:
    huge = {"blob": "x" * (MAX_PARAMETERS_BYTES + 1)}  # refused as input, stored under other limits
    stored = json.dumps(
        {
            "id": str(uuid4()),
            "timestamp": "2026-01-01T12:00:00",
            "query_type": "price",
            "parameters": huge,
        }
    )
    with pytest.raises(ValidationError):
        QueryRecord.model_validate_json(stored)  # user input is still checked

    [loaded] = queries_from_json([stored])
    assert type(loaded) is QueryRecord and loaded.parameters == huge
    assert loaded.timestamp.tzinfo is None  # stored times are UTC already: not converted
    record = QueryRecord(query_type="news", parameters={"symbol": "AAPL"}, cache_hit=True)
    assert queries_from_json([record.model_dump_json()]) == [record]
    assert queries_from_json([]) == []
    with pytest.raises(ValidationError):  # types and constraints still apply
        queries_from_json(['{"query_type": ""}'])
    assert queries_from_rows([SimpleNamespace(**dict(record))]) == [record]

    session = make_session(assets=["AAPL", "MSFT"], tags=["t"])
    fields = dict(session)
    fields["assets"] = ["not normalized", "not normalized"]
    rebuilt = session_from_store(fields, baseline=False)
    assert type(rebuilt) is Session and rebuilt.assets == ["not normalized", "not normalized"]
    assert rebuilt.baseline is None
    session.mark_baseline()
    assert session_from_store(dict(session)) == session  # baselines included


def test_each_read_of_stored_queries_gets_records_of_its_own() -> None:
    records = [
        QueryRecord(query_type="price", parameters={"symbol": "AAPL", "i": [i]}) for i in range(3)
    ]
    texts = [record.model_dump_json() for record in records]
    first = queries_from_json(texts)
    for read in first:  # what a caller does to its copy
        read.parameters["symbol"] = "MSFT"
        read.parameters["i"].append(-1)
        read.result_summary = "changed"
    second = queries_from_json(texts)
    assert second == records
    for a, b in zip(first, second, strict=True):
        assert a is not b and a.parameters is not b.parameters
    with pytest.raises(ValidationError):  # a record read back still validates assignment
        second[0].query_type = ""


def test_baseline_is_a_private_attribute_of_each_session() -> None:
    session = make_session(tags=["t"])
    assert session.baseline is None
    session.state.update_context("k", [1])
    session.mark_baseline()
    baseline = session.baseline
    assert baseline is not None and baseline.version == session.version
    assert baseline.sections["context"] == {"k": "[1]"}
    session.tags.append("u")  # the caller's edits do not reach the baseline
    assert baseline.tags == ["t"]
    assert "baseline" not in session.model_dump() and "_baseline" not in session.model_dump()
    assert Session.model_validate(session.model_dump()).baseline is None
