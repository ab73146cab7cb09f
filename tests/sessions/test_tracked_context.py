"""A tracked query and the context it sets are one write (``append_query(context=...)``),
on every deployment: stored together, or, if the store refuses either, neither."""

from __future__ import annotations

from typing import Any

import pytest

from fiml.core.errors import ContextValueError, SessionClosedError
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.models import MAX_STATE_KEYS, Session


def query(n: int) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": f"S{n}"}, cache_hit=n % 2 == 0)


async def stored(store: SessionStore, session: Session) -> Session:
    found = await store.get_session(session.id)
    assert found is not None
    return found


async def test_the_query_and_its_context_are_one_write(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.update_state(session.id, context={"kept": 1, "focus": "old"})
    before = await stored(store, session)

    counters = await store.append_query(session.id, query(2), context={"focus": "AAPL"})

    after = await stored(store, session)
    assert (counters.total_queries, counters.cache_hits, counters.added_queries) == (1, 1, 1)
    assert counters.version == before.version + 1  # one write, not two
    assert after.version == counters.version
    assert after.state.context == {"kept": 1, "focus": "AAPL"}
    assert [q.parameters for q in after.state.history.queries] == [{"symbol": "S2"}]


async def test_a_retried_query_counts_once_and_its_context_is_set(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    first = query(1)
    await store.append_query(session.id, first, context={"step": 1})
    again = await store.append_query(session.id, first, context={"step": 2})
    after = await stored(store, session)
    assert (again.total_queries, again.added_queries) == (1, 0)
    assert after.state.context == {"step": 2}
    assert after.state.history.query_type_counts == {"price": 1}


async def test_an_empty_context_tracks_the_query_alone(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    counters = await store.append_query(session.id, query(1), context={})
    after = await stored(store, session)
    assert counters.added_queries == 1
    assert after.state.context == {}


@pytest.mark.parametrize(
    "context",
    [
        ["not", "an", "object"],
        {"bad": object()},
        {"nan": float("nan")},
        {"": "an empty key"},
        {f"k{i}": i for i in range(MAX_STATE_KEYS + 1)},
    ],
    ids=["not-an-object", "not-json", "nan", "empty-key", "too-many-keys"],
)
async def test_bad_context_is_refused_and_changes_nothing(
    store: SessionStore, context: Any
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    before = (await stored(store, session)).to_dict()
    with pytest.raises(ContextValueError) as caught:
        await store.append_query(session.id, query(1), context=context)
    assert caught.value.field.startswith("context")  # the section, or "context key"
    assert (await stored(store, session)).to_dict() == before


async def test_context_past_the_key_limit_takes_the_query_back(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.update_state(session.id, context={f"k{i}": i for i in range(MAX_STATE_KEYS)})
    before = (await stored(store, session)).to_dict()
    # Each key is fine alone; only merged with what is stored is the section too big,
    # which the backend finds inside the write, after it placed the query.
    with pytest.raises(ContextValueError) as caught:
        await store.append_query(session.id, query(1), context={"one-more": 1})
    assert caught.value.field == "context"
    assert (await stored(store, session)).to_dict() == before


async def test_a_closed_session_takes_neither(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.close_session(session.id)
    before = (await stored(store, session)).to_dict()
    with pytest.raises(SessionClosedError):
        await store.append_query(session.id, query(1), context={"focus": "AAPL"})
    assert (await stored(store, session)).to_dict() == before
