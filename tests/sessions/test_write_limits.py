"""The limits the docs list hold on every write path, in-place edits included.

An edit in place (``session.assets.append``, ``session.state.context[k] = v``,
``query.parameters[k] = v``) or a field set behind the model's back
(``query.__dict__[...]``, ``QueryRecord.model_construct``) runs no validator; the store
checks what it writes, refuses past any limit with a typed error naming the field, and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import pytest

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions import QueryRecord, Session, SessionStore
from fiml.sessions.limits import (
    MAX_ASSETS,
    MAX_JSON_DEPTH,
    MAX_LABEL_CHARS,
    MAX_PARAMETERS_BYTES,
    MAX_STATE_KEY_CHARS,
    MAX_STATE_KEYS,
    MAX_STATE_VALUE_BYTES,
    MAX_SUMMARY_CHARS,
    MAX_TAGS,
)
from tests.fuzz.strategies import nested
from tests.sessions.test_input_values import appending, assert_refused_and_unchanged, snapshot

Edit = Callable[[Session], None]


def query_with(**fields: Any) -> QueryRecord:
    """A valid query, then ``fields`` set behind the model's back."""
    query = QueryRecord(query_type="price", parameters={"symbol": "AAPL"})
    query.__dict__.update(fields)
    return query


BAD_QUERIES: dict[str, tuple[QueryRecord, str]] = {
    "query_type 500 characters": (query_with(query_type="x" * 500), "query_type"),
    "query_type one past": (query_with(query_type="x" * (MAX_LABEL_CHARS + 1)), "query_type"),
    "query_type empty": (query_with(query_type=""), "query_type"),
    "query_type not text": (query_with(query_type=7), "query_type"),
    "constructed query_type": (
        QueryRecord.model_construct(query_type="y" * 500, parameters={}),
        "query_type",
    ),
    "summary one past": (
        query_with(result_summary="s" * (MAX_SUMMARY_CHARS + 1)),
        "result_summary",
    ),
    "parameters 200 KB": (query_with(parameters={"p": "x" * 200_000}), "parameters"),
    "parameters one past": (
        query_with(parameters={"p": "x" * (MAX_PARAMETERS_BYTES - len('{"p":""}') + 1)}),
        "parameters",
    ),
    "parameters 150 deep": (query_with(parameters={"p": nested(150, "list")}), "parameters"),
    "parameters not JSON": (query_with(parameters={"p": {1, 2}}), "parameters"),
    "parameters not an object": (query_with(parameters=["p"]), "parameters"),
    "parameters with a key not text": (query_with(parameters={1.5: "p"}), "parameters"),
    "negative time": (query_with(execution_time_ms=-1.0), "execution_time_ms"),
    "infinite time": (query_with(execution_time_ms=float("inf")), "execution_time_ms"),
    "cache_hit not a bool": (query_with(cache_hit="yes"), "cache_hit"),
    "naive timestamp": (query_with(timestamp=datetime(2026, 1, 1)), "timestamp"),
    "id not a UUID": (query_with(id="not-a-uuid"), "query.id"),
}


def _section_edits() -> dict[str, tuple[Edit, str, type[InvalidInputError]]]:
    too_big = "x" * MAX_STATE_VALUE_BYTES
    edits: dict[str, tuple[Edit, str, type[InvalidInputError]]] = {}
    bad_keys: dict[str, Any] = {  # keys of any type: an in-place edit is not type-checked
        "empty key": "",
        "key one past": "k" * (MAX_STATE_KEY_CHARS + 1),
        "5,000-character key": "k" * 5000,
        "int key": 5,
        "None key": None,
        "tuple key": (1, 2),
    }
    for name, key in bad_keys.items():

        def set_key(session: Session, key: Any = key) -> None:
            session.state.context[key] = 1

        edits[name] = (set_key, "context key", ContextValueError)
    edits["value past 64 KiB"] = (
        lambda s: s.state.preferences.__setitem__("p", too_big),
        "preferences['p']",
        ContextValueError,
    )
    edits["value nested one past"] = (
        lambda s: s.state.metadata.__setitem__("m", nested(MAX_JSON_DEPTH + 1, "dict")),
        "metadata['m']",
        ContextValueError,
    )
    edits["value edited in place past 64 KiB"] = (
        lambda s: s.state.context["thesis"].append(too_big),
        "context['thesis']",
        ContextValueError,
    )
    edits["one key past the section's limit"] = (
        lambda s: s.state.intermediate_results.update(
            {f"r{i}": i for i in range(MAX_STATE_KEYS + 1)}
        ),
        "intermediate_results",
        ContextValueError,
    )
    edits["section replaced by a list"] = (
        lambda s: setattr(s.state, "context", ["not", "an", "object"]),
        "context",
        ContextValueError,
    )
    edits["assets one past"] = (
        lambda s: s.assets.extend(f"A{i}" for i in range(MAX_ASSETS)),
        "assets",
        InvalidInputError,
    )
    edits["201 assets"] = (
        lambda s: s.assets.extend(f"B{i}" for i in range(200)),
        "assets",
        InvalidInputError,
    )
    edits["tags one past"] = (
        lambda s: s.tags.extend(f"t{i}" for i in range(MAX_TAGS)),
        "tags",
        InvalidInputError,
    )
    edits["100 tags"] = (
        lambda s: s.tags.extend(f"u{i}" for i in range(100)),
        "tags",
        InvalidInputError,
    )
    edits["empty tag"] = (lambda s: s.tags.append("  "), "tags", InvalidInputError)
    edits["history replaced"] = (
        lambda s: setattr(s.state, "history", None),
        "session.state",
        InvalidInputError,
    )
    edits["a query that is not one"] = (
        lambda s: s.state.history.queries.append({"query_type": "price"}),  # type: ignore[arg-type]
        "query",
        InvalidInputError,
    )
    return edits


@pytest.fixture
async def session(store: SessionStore) -> Session:
    created = await store.create_session(["AAPL"], "equity", user_id="u1", tags=["t"])
    await store.update_state(created.id, context={"thesis": ["kept"]})
    await store.append_query(created.id, QueryRecord(query_type="price"))
    return created


async def test_update_session_refuses_in_place_edits_past_a_limit(
    store: SessionStore, session: Session
) -> None:
    edits = _section_edits()
    for name, (query, field) in BAD_QUERIES.items():
        edits[f"new query: {name}"] = (
            appending(query),
            field,
            InvalidInputError,
        )
    for edit, field, error in edits.values():
        copy = await store.get_session(session.id)
        assert copy is not None
        copy.state.update_context("also", "refused with the rest")
        edit(copy)

        await assert_refused_and_unchanged(
            store, session, partial(store.update_session, copy.id, copy), field, error
        )


async def test_append_query_refuses_a_query_past_a_limit(
    store: SessionStore, session: Session
) -> None:
    for query, field in BAD_QUERIES.values():
        await assert_refused_and_unchanged(
            store, session, partial(store.append_query, session.id, query), field
        )


async def test_a_refused_query_never_makes_the_session_unreadable(
    store: SessionStore, session: Session
) -> None:
    query, _ = BAD_QUERIES["query_type 500 characters"]
    with pytest.raises(InvalidInputError):
        await store.append_query(session.id, query)
    again = await store.get_session(session.id)
    assert again is not None
    assert [q.query_type for q in again.state.history.queries] == ["price"]


async def test_update_state_refuses_past_a_limit(store: SessionStore, session: Session) -> None:
    for arguments, field in (
        ({"context": {f"k{i}": i for i in range(MAX_STATE_KEYS + 1)}}, "context"),
        ({"context": {"": 1}}, "context key"),
        ({"preferences": {"k" * (MAX_STATE_KEY_CHARS + 1): 1}}, "preferences key"),
        ({"intermediate_results": {7: 1}}, "intermediate_results key"),
        ({"context": {"k": "x" * MAX_STATE_VALUE_BYTES}}, "context['k']"),
        ({"context": {"k": nested(150, "list")}}, "context['k']"),
        ({"context": ["not", "an", "object"]}, "context"),
        ({"remove_context": "thesis"}, "remove_context"),
        ({"remove_context": 5}, "remove_context"),
        ({"remove_context": [5]}, "remove_context key"),
        ({"remove_context": [""]}, "remove_context key"),
        ({"remove_context": [f"k{i}" for i in range(MAX_STATE_KEYS + 1)]}, "remove_context"),
    ):
        await assert_refused_and_unchanged(
            store, session, partial(store.update_state, session.id, **arguments), field
        )


async def test_values_at_each_limit_are_stored(store: SessionStore, session: Session) -> None:
    copy = await store.get_session(session.id)
    assert copy is not None
    copy.assets.extend(f"A{i}" for i in range(1, MAX_ASSETS))
    copy.tags.extend(f"t{i}" for i in range(MAX_TAGS - 1))
    copy.state.context["k" * MAX_STATE_KEY_CHARS] = nested(MAX_JSON_DEPTH, "list")
    at_limit = QueryRecord(query_type="q" * MAX_LABEL_CHARS, result_summary="s" * MAX_SUMMARY_CHARS)
    at_limit.parameters["p"] = "x" * (MAX_PARAMETERS_BYTES - len('{"p":""}'))
    copy.state.history.queries.append(at_limit)
    copy.assets[-1] = " a49 "  # an in-place edit is normalized like an assignment

    await store.update_session(copy.id, copy)

    stored = await snapshot(store, session)
    assert len(stored["assets"]) == MAX_ASSETS and len(stored["tags"]) == MAX_TAGS
    assert stored["assets"][-1] == "A49"
    assert stored["state"]["history"]["queries"][-1]["query_type"] == "q" * MAX_LABEL_CHARS
    assert stored["state"]["context"]["k" * MAX_STATE_KEY_CHARS] == nested(MAX_JSON_DEPTH, "list")
