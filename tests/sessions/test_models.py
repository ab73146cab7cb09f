"""The session models on their own: history counters, state, lifecycle, serialization."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions.limits import MAX_PARAMETERS_BYTES
from fiml.sessions.models import (
    MAX_STATE_KEYS,
    AnalysisHistory,
    DecodedQueries,
    QueryRecord,
    Session,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionType,
    queries_from_json,
    session_from_store,
    stored_validator,
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


def test_stored_validators_rebuild_the_same_models_without_rechecking_input() -> None:
    huge = {"blob": "x" * (MAX_PARAMETERS_BYTES + 1)}  # refused as input, never stored so
    stored = json.dumps(
        {
            "id": str(uuid4()),
            "timestamp": "2026-01-01T12:00:00",
            "query_type": "price",
            "parameters": huge,
        }
    )
    with pytest.raises(ValidationError):
        QueryRecord.model_validate_json(stored)  # the class's own validator still checks

    # No context at all: the Python field validators are not part of these validators.
    [loaded] = stored_validator(QueryRecord, many=True).validate_json(f"[{stored}]")
    assert type(loaded) is QueryRecord and loaded.parameters == huge
    assert loaded.timestamp.tzinfo is None  # stored times are UTC already: not converted
    assert QueryRecord.__pydantic_complete__

    record = QueryRecord(query_type="news", parameters={"symbol": "AAPL"}, cache_hit=True)
    assert queries_from_json([record.model_dump_json()]) == [record]
    with pytest.raises(ValidationError):  # types and constraints still apply
        queries_from_json(['{"query_type": ""}'])

    session = make_session(assets=["AAPL", "MSFT"], tags=["t"])
    fields = dict(session)
    fields["assets"] = ["not normalized", "not normalized"]
    rebuilt = stored_validator(Session).validate_python(fields)
    assert type(rebuilt) is Session and rebuilt.assets == ["not normalized", "not normalized"]
    assert rebuilt.baseline is None  # the post-init still sets up the private attributes
    session.mark_baseline()
    assert session_from_store(dict(session)) == session  # baselines included


def test_decoded_queries_hand_out_new_records_each_read() -> None:
    decode = DecodedQueries()
    records = [
        QueryRecord(query_type="price", parameters={"symbol": "AAPL", "i": i}, cache_hit=i == 1)
        for i in range(3)
    ]
    texts = [record.model_dump_json() for record in records]

    first = decode(texts)
    assert first == records and len(decode) == 3
    for read in first:  # what a caller does to its copy
        read.parameters["symbol"] = "MSFT"
        read.result_summary = "changed"
    second = decode([text.encode().decode() for text in texts])  # equal text, new string
    assert second == records and len(decode) == 3
    for a, b in zip(first, second, strict=True):
        assert a is not b and a.parameters is not b.parameters
    assert all(r.model_fields_set == set(QueryRecord.model_fields) for r in second)
    assert second[0].model_dump_json() == texts[0]
    with pytest.raises(ValidationError):  # a remembered record's copy still validates
        second[0].query_type = ""
    assert decode([texts[0], texts[2], texts[0]]) == [records[0], records[2], records[0]]


def test_decoded_queries_remember_only_what_a_copy_cannot_share() -> None:
    decode = DecodedQueries(max_entries=2, max_chars=400)
    nested = QueryRecord(query_type="screen", parameters={"filters": {"pe": [1, 2]}})
    long = QueryRecord(query_type="news", result_summary="x" * 400)
    defaulted = '{"query_type":"price"}'  # a stored text missing fields gets defaults
    first = decode([nested.model_dump_json(), long.model_dump_json(), defaulted])
    assert first[:2] == [nested, long] and len(decode) == 0
    first[0].parameters["filters"]["pe"].append(3)
    assert decode([nested.model_dump_json()]) == [nested]
    assert decode([defaulted])[0].id != first[2].id

    flat = [QueryRecord(query_type="price", parameters={"i": i}) for i in range(3)]
    texts = [record.model_dump_json() for record in flat]
    decode(texts)
    assert len(decode) == 2 and texts[0] not in decode  # the oldest forgotten first
    assert texts[1] in decode and texts[2] in decode
    decode.clear()
    assert len(decode) == 0 and decode([]) == []

    with pytest.raises(ValidationError):
        decode([flat[0].model_dump_json(), '{"query_type": ""}'])
    assert len(decode) == 0  # a failed read remembers nothing


def test_stored_validator_refuses_a_model_it_cannot_strip() -> None:
    class Checked(BaseModel):
        value: int

        @model_validator(mode="after")
        def _check(self) -> Checked:
            return self

    with pytest.raises(TypeError, match="Checked"):
        stored_validator(Checked)
