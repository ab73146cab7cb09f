"""One value model on every tier: text no tier can hold alike is refused everywhere.

PostgreSQL cannot store a NUL character (in text or JSON) and no tier can encode a lone
surrogate as UTF-8, so every string a caller can write — user id, assets, tags, query
type, result summary, parameter keys and values at any depth, state keys and values at
any depth — holding either is refused with a typed error naming the field, through every
write path, on every deployment, and the stored session is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions import ALL_QUERIES, QueryRecord, Session, SessionStore
from fiml.sessions.models import STATE_SECTIONS

BAD_TEXT = {"nul": "\x00", "lone-surrogate": "\ud800"}
Write = Callable[[SessionStore, Session, str], Awaitable[object]]


async def snapshot(store: SessionStore, session: Session) -> dict[str, Any]:
    """Everything stored of ``session``: every field, every query."""
    stored = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert stored is not None
    return stored.model_dump()


def good_query(**fields: Any) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": "AAPL"}, **fields)


def tampered(field: str, value: Any) -> QueryRecord:
    """A query with ``field`` set behind the model's back, as an in-place edit can."""
    query = good_query(result_summary="fine")
    query.__dict__[field] = value
    return query


def with_parameters(parameters: dict[str, Any]) -> QueryRecord:
    query = good_query()
    query.parameters.clear()
    query.parameters.update(parameters)  # an in-place edit: no validator sees it
    return query


def queries_with(bad: str) -> dict[str, tuple[QueryRecord, str]]:
    """Queries holding ``bad`` in one field each, and the field the error must name."""
    return {
        "query_type": (tampered("query_type", f"price{bad}"), "query_type"),
        "result_summary": (tampered("result_summary", f"AAPL {bad}"), "result_summary"),
        "parameter key": (with_parameters({f"sym{bad}": "AAPL"}), "parameters"),
        "nested parameter key": (with_parameters({"f": [{f"k{bad}": 1}]}), "parameters"),
        "nested parameter value": (with_parameters({"f": {"g": [1, f"v{bad}"]}}), "parameters"),
        "built without validation": (
            QueryRecord.model_construct(query_type=f"x{bad}", parameters={}),
            "query_type",
        ),
    }


def state_edits(bad: str) -> dict[str, tuple[Callable[[Session], None], str]]:
    """In-place edits of a read session's state holding ``bad``, and the field to name."""
    edits: dict[str, tuple[Callable[[Session], None], str]] = {}
    for section in STATE_SECTIONS:

        def set_key(session: Session, section: str = section) -> None:
            getattr(session.state, section)[f"k{bad}"] = 1

        def set_value(session: Session, section: str = section) -> None:
            getattr(session.state, section)["k"] = {"deep": [1, {"x": f"v{bad}"}]}

        def set_nested_key(session: Session, section: str = section) -> None:
            getattr(session.state, section)["k"] = [{f"inner{bad}": 1}]

        edits[f"{section} key"] = (set_key, section)
        edits[f"{section} value"] = (set_value, section)
        edits[f"{section} nested key"] = (set_nested_key, section)
    return edits


def appending(query: QueryRecord) -> Callable[[Session], None]:
    """An in-place edit appending ``query`` to a read session's history."""
    return lambda s: s.state.history.queries.append(query)


def label_edits(bad: str) -> dict[str, tuple[Callable[[Session], None], str]]:
    return {
        "asset": (lambda s: s.assets.append(f"MSFT{bad}"), "assets"),
        "tag": (lambda s: s.tags.append(f"tech{bad}"), "tags"),
    }


async def assert_refused_and_unchanged(
    store: SessionStore,
    session: Session,
    write: Callable[[], Awaitable[object]],
    field: str,
    error: type[InvalidInputError] = InvalidInputError,
) -> None:
    before = await snapshot(store, session)
    with pytest.raises(error) as refused:
        await write()
    assert field in refused.value.field, refused.value
    assert await snapshot(store, session) == before


@pytest.fixture
async def session(store: SessionStore) -> Session:
    created = await store.create_session(["AAPL"], "equity", user_id="u1", tags=["t"])
    await store.update_state(created.id, context={"thesis": "kept"}, preferences={"p": 1})
    await store.append_query(created.id, good_query())
    return created


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=list(BAD_TEXT))
async def test_create_session_refuses_it_in_every_field(store: SessionStore, bad: str) -> None:
    for arguments, field in (
        ({"user_id": f"u{bad}"}, "user_id"),
        ({"assets": [f"AAPL{bad}"]}, "assets"),
        ({"tags": [f"t{bad}"]}, "tags"),
    ):
        call: dict[str, Any] = {
            "assets": ["AAPL"],
            "session_type": "equity",
            "user_id": "u2",
            **arguments,
        }
        with pytest.raises(InvalidInputError) as refused:
            await store.create_session(**call)
        assert refused.value.field == field
    assert await store.list_user_sessions("u2", include_archived=True) == []


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=list(BAD_TEXT))
async def test_update_session_refuses_it_in_every_field(
    store: SessionStore, session: Session, bad: str
) -> None:
    edits = {**label_edits(bad), **state_edits(bad)}
    for name, (query, field) in queries_with(bad).items():
        edits[f"new query, {name}"] = (appending(query), field)
    for edit, field in edits.values():
        copy = await store.get_session(session.id)
        assert copy is not None
        copy.state.update_context("good", "and refused with the rest")
        edit(copy)

        await assert_refused_and_unchanged(
            store, session, partial(store.update_session, copy.id, copy), field
        )


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=list(BAD_TEXT))
async def test_append_query_refuses_it_in_every_field(
    store: SessionStore, session: Session, bad: str
) -> None:
    for query, field in queries_with(bad).values():
        await assert_refused_and_unchanged(
            store, session, partial(store.append_query, session.id, query), field
        )


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=list(BAD_TEXT))
async def test_update_state_refuses_it_in_every_field(
    store: SessionStore, session: Session, bad: str
) -> None:
    calls: list[tuple[dict[str, Any], str]] = [({"remove_context": [f"k{bad}"]}, "remove_context")]
    for section in ("context", "preferences", "intermediate_results"):
        calls += [
            ({section: {f"k{bad}": 1}}, section),
            ({section: {"k": {"deep": [f"v{bad}"]}}}, section),
            ({section: {"k": {f"inner{bad}": True}}}, section),
            ({section: {"good": 1, "k": f"v{bad}"}}, section),
        ]
    for arguments, field in calls:
        await assert_refused_and_unchanged(
            store,
            session,
            partial(store.update_state, session.id, **arguments),
            field,
            ContextValueError,
        )


async def test_a_typed_backslash_u0000_is_plain_text(store: SessionStore) -> None:
    """The JSON escape of NUL typed as six characters is not a NUL: it is stored as typed."""
    typed = "\\u0000"
    created = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.update_state(created.id, context={typed: {"k": [typed, "\\\\u0000"]}})
    await store.append_query(created.id, good_query(result_summary=typed))
    await store.append_query(
        created.id, QueryRecord(query_type="price", parameters={typed: {typed: typed}})
    )

    stored = await store.get_session(created.id)
    assert stored is not None
    assert stored.state.context == {typed: {"k": [typed, "\\\\u0000"]}}
    assert stored.state.history.queries[0].result_summary == typed
    assert stored.state.history.queries[1].parameters == {typed: {typed: typed}}
