"""SessionStore.search_user_sessions on every deployment: exact results on a known data set,
newest first and paged; only the caller's sessions, active and archived; bad criteria
refused, naming the argument."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from fiml.core.errors import InvalidCursorError, InvalidInputError, InvalidSessionTypeError
from fiml.sessions import QueryRecord, SessionStore

Named = dict[str, UUID]


async def _session(
    store: SessionStore,
    user: str,
    assets: list[str],
    kind: str = "equity",
    *,
    tags: list[str] | None = None,
    context: dict[str, Any] | None = None,
    symbol: str | None = None,
    summary: str | None = None,
) -> UUID:
    session = await store.create_session(assets, kind, user_id=user, tags=tags)
    if symbol is not None:
        query = QueryRecord(
            query_type="search_by_symbol", parameters={"symbol": symbol}, result_summary=summary
        )
        await store.append_query(session.id, query)
    if context is not None:
        await store.update_state(session.id, context=context)
    return session.id


async def _data_set(store: SessionStore) -> Named:
    """alice's four sessions (a3 closed and archived) and bob's look-alike, oldest first."""
    ids = {
        "a1": await _session(
            store,
            "alice",
            ["AAPL", "AMD"],
            tags=["tech"],
            context={"thesis": "AI growth"},
            symbol="nvda",
            summary="Nvidia beats earnings",
        ),
        "b1": await _session(
            store,
            "bob",
            ["AAPL", "NVDA", "MSFT", "ETH"],
            tags=["tech", "value"],
            context={"thesis": "AI growth dividend"},
            symbol="ETH",
            summary="Nvidia beats earnings; Ether upgrade ahead",
        ),
        "a2": await _session(
            store,
            "alice",
            ["MSFT"],
            tags=["tech", "value"],
            context={"note": {"deep": ["a dividend story", 3]}},
        ),
        "a3": await _session(
            store, "alice", ["BTC"], "crypto", symbol="ETH", summary="Ether upgrade ahead"
        ),
        "a4": await _session(store, "alice", ["NVDA"], tags=["growth"]),
    }
    await store.close_session(ids["a3"])
    report = await store.cleanup_expired_sessions()
    assert report.archived == 1
    return ids


async def _found(store: SessionStore, user: str = "alice", **criteria: Any) -> list[UUID]:
    page = await store.search_user_sessions(user, **criteria)
    return [s.id for s in page.sessions]


async def test_each_criterion_finds_exactly_the_callers_matching_sessions(
    store: SessionStore,
) -> None:
    ids = await _data_set(store)
    a1, a2, a3, a4 = ids["a1"], ids["a2"], ids["a3"], ids["a4"]
    expected: list[tuple[dict[str, Any], list[UUID]]] = [
        ({}, [a4, a3, a2, a1]),
        ({"asset": "NVDA"}, [a4, a1]),  # a1 by its query's symbol
        ({"asset": "aapl"}, [a1]),
        ({"asset": "ETH"}, [a3]),  # archived
        ({"asset": "ETH", "include_archived": False}, []),
        ({"asset": "TSLA"}, []),
        ({"tag": "tech"}, [a2, a1]),
        ({"tag": "tech", "asset": "MSFT"}, [a2]),
        ({"tag": "Tech"}, []),
        ({"session_type": "crypto"}, [a3]),
        ({"session_type": "equity", "tag": "growth"}, [a4]),
        ({"text": "ai GROWTH"}, [a1]),  # the context
        ({"text": "dividend"}, [a2]),  # a string deep in the context
        ({"text": "earnings, nvidia!"}, [a1]),  # a result summary
        ({"text": "ether"}, [a3]),
        ({"text": "ether", "include_archived": False}, []),
        ({"text": "earnings growth"}, []),  # the words are in different texts
        ({"text": "3"}, []),  # numbers in the context are not words of it
        ({"asset": "NVDA", "text": "earnings"}, [a1]),
    ]
    for criteria, sessions in expected:
        assert await _found(store, **criteria) == sessions, criteria


async def test_a_time_window_and_pages_newest_first(store: SessionStore) -> None:
    ids = await _data_set(store)
    a2 = await store.get_session(ids["a2"])
    assert a2 is not None
    since = await _found(store, since=a2.created_at)
    assert since == [ids["a4"], ids["a3"], ids["a2"]]
    assert await _found(store, until=a2.created_at.isoformat()) == [ids["a1"]]

    seen, cursor = [], None
    while True:
        page = await store.search_user_sessions("alice", tag="tech", limit=1, cursor=cursor)
        seen += [s.id for s in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [ids["a2"], ids["a1"]]


async def test_another_users_sessions_never_appear(store: SessionStore) -> None:
    ids = await _data_set(store)
    criteria: list[dict[str, Any]] = [
        {},
        {"asset": "NVDA"},
        {"asset": "ETH"},
        {"tag": "value"},
        {"text": "ether upgrade"},
        {"text": "dividend growth"},
    ]
    for given in criteria:
        assert ids["b1"] not in await _found(store, **given), given
        assert set(await _found(store, "bob", **given)) <= {ids["b1"]}, given
    assert await _found(store, "bob", asset="NVDA") == [ids["b1"]]
    assert await _found(store, "mallory") == []


async def test_the_indexes_follow_edits(store: SessionStore) -> None:
    """Tags are what a session carries now; an asset once held or queried still finds it."""
    ids = await _data_set(store)
    session = await store.get_session(ids["a2"])
    assert session is not None
    session.tags.remove("value")
    session.tags.append("income")
    session.assets.append("IBM")
    await store.update_session(session.id, session)
    assert await _found(store, tag="value") == []
    assert await _found(store, tag="income") == [ids["a2"]]
    assert await _found(store, tag="tech") == [ids["a2"], ids["a1"]]  # a tag kept stays
    assert await _found(store, asset="IBM") == [ids["a2"]]
    await store.append_query(
        ids["a4"], QueryRecord(query_type="q", parameters={"symbol": " amd "}, result_summary=None)
    )
    assert await _found(store, asset="AMD") == [ids["a4"], ids["a1"]]
    session = await store.get_session(ids["a1"])
    assert session is not None
    session.assets.remove("AMD")
    await store.update_session(session.id, session)
    assert await _found(store, asset="AMD") == [ids["a4"], ids["a1"]]
    await store.update_state(ids["a1"], context={"thesis": "value play"})
    assert await _found(store, text="ai growth") == []
    assert await _found(store, text="value play") == [ids["a1"]]
    assert await store.delete_session(ids["a4"])
    assert await _found(store, asset="NVDA") == [ids["a1"]]


@pytest.mark.parametrize(
    ("criteria", "field", "error"),
    [
        ({"asset": ""}, "asset", InvalidInputError),
        ({"asset": 3}, "asset", InvalidInputError),
        ({"tag": "x" * 65}, "tag", InvalidInputError),
        ({"text": "!!! ..."}, "text", InvalidInputError),
        ({"text": " ".join(f"w{i}" for i in range(17))}, "text", InvalidInputError),
        ({"text": 5}, "text", InvalidInputError),
        ({"since": "yesterday"}, "since", InvalidInputError),
        ({"since": "2026-01-01T00:00:00"}, "since", InvalidInputError),  # no offset
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until", None),
        ({"include_archived": 1}, "include_archived", InvalidInputError),
        ({"limit": 0}, "limit", InvalidInputError),
        ({"session_type": "stocks"}, "session_type", InvalidSessionTypeError),
        ({"cursor": "forged"}, "cursor", InvalidCursorError),
    ],
)
async def test_bad_criteria_are_refused_naming_them(
    store: SessionStore, criteria: dict[str, Any], field: str, error: type[Exception] | None
) -> None:
    with pytest.raises(error or InvalidInputError) as refused:
        await store.search_user_sessions("alice", **criteria)
    assert field in str(refused.value)
