"""Concurrent edits of a session's ``assets`` and ``tags`` merge like its state keys.

``update_session`` sends what its caller added to and removed from each list since reading
it (``ListChange``); the backend merges that into what is stored now, inside its atomic
write: stored order kept, removals dropped, additions appended unless present. The last
write that adds or removes an element decides whether it stays; a writer that did not touch
an element leaves it alone. Size limits hold after the merge.
"""

from __future__ import annotations

import asyncio

import pytest

from fiml.core.errors import InvalidInputError, SessionConflictError
from fiml.sessions import QueryRecord, Session, SessionStore
from fiml.sessions.backends.base import ListChange
from fiml.sessions.models import MAX_ASSETS, MAX_TAGS
from fiml.sessions.store import changes_since_read


async def read(store: SessionStore, session: Session) -> Session:
    copy = await store.get_session(session.id)
    assert copy is not None
    return copy


def a_query() -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": "X"}, result_summary="X")


async def test_two_stale_copies_each_adding_an_asset_both_survive(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1", tags=["tech"])
    first, second = await read(store, session), await read(store, session)
    first.assets = [*first.assets, "TSLA"]
    first.tags = [*first.tags, "ev"]
    second.assets.append("NVDA")  # in place, as well as by assignment
    second.tags.append("chips")
    await store.update_session(first.id, first)
    await store.update_session(second.id, second)

    final = await read(store, session)
    assert final.assets == ["AAPL", "TSLA", "NVDA"]
    assert final.tags == ["tech", "ev", "chips"]
    assert second.assets == ["AAPL", "NVDA"]  # the caller's copy is not reloaded


async def test_n_concurrent_writers_each_adding_from_a_stale_copy_all_survive(
    store: SessionStore,
) -> None:
    writers = 12
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    copies = [await read(store, session) for _ in range(writers)]
    for n, copy in enumerate(copies):
        copy.assets = [*copy.assets, f"S{n}"]
        copy.tags = [*copy.tags, f"t{n}"]
        copy.state.update_context(f"k{n}", n)

    await asyncio.gather(*(store.update_session(c.id, c) for c in copies))

    final = await read(store, session)
    assert final.assets[0] == "AAPL"
    assert sorted(final.assets[1:]) == sorted(f"S{n}" for n in range(writers))
    assert sorted(final.tags) == sorted(f"t{n}" for n in range(writers))
    assert final.state.context == {f"k{n}": n for n in range(writers)}
    assert final.version == session.version + writers


async def test_concurrent_adds_and_removes_from_stale_copies_all_apply(
    store: SessionStore,
) -> None:
    start = [f"A{n}" for n in range(10)]
    session = await store.create_session(start, "equity", tags=["keep", "drop"])
    copies = [await read(store, session) for _ in range(10)]
    for n, copy in enumerate(copies):
        if n < 5:
            copy.assets.remove(f"A{n}")
        else:
            copy.assets.append(f"B{n}")
    copies[0].tags.remove("drop")
    copies[9].tags.append("new")

    await asyncio.gather(*(store.update_session(c.id, c) for c in copies))

    final = await read(store, session)
    assert final.assets[:5] == [f"A{n}" for n in range(5, 10)]
    assert sorted(final.assets[5:]) == [f"B{n}" for n in range(5, 10)]
    assert final.tags == ["keep", "new"]


async def test_a_stale_copy_that_left_a_list_alone_does_not_bring_back_what_was_removed(
    store: SessionStore,
) -> None:
    session = await store.create_session(["AAPL", "MSFT"], "equity", tags=["a", "b"])
    stale, remover = await read(store, session), await read(store, session)
    remover.assets.remove("MSFT")
    remover.tags.remove("a")
    await store.update_session(remover.id, remover)
    stale.state.update_context("note", "unrelated")  # its lists still hold MSFT and "a"
    await store.update_session(stale.id, stale)

    final = await read(store, session)
    assert final.assets == ["AAPL"]
    assert final.tags == ["b"]
    assert final.state.context == {"note": "unrelated"}


async def test_the_last_write_that_adds_or_removes_an_element_decides(
    store: SessionStore,
) -> None:
    session = await store.create_session(["AAPL", "MSFT"], "equity")
    late_remover, early_remover = await read(store, session), await read(store, session)
    early_remover.assets.remove("MSFT")
    await store.update_session(early_remover.id, early_remover)
    re_adder = await read(store, session)
    re_adder.assets.append("MSFT")  # re-added after the first removal
    await store.update_session(re_adder.id, re_adder)
    assert (await read(store, session)).assets == ["AAPL", "MSFT"]

    late_remover.assets.remove("MSFT")  # read before both, written after both
    await store.update_session(late_remover.id, late_remover)
    assert (await read(store, session)).assets == ["AAPL"]

    once, twice = await read(store, session), await read(store, session)
    both, other = await read(store, session), await read(store, session)
    both.assets.append("TSLA")
    other.assets.append("TSLA")
    await store.update_session(both.id, both)
    late = await read(store, session)
    late.assets.append("NVDA")
    await store.update_session(late.id, late)
    await store.update_session(other.id, other)  # already there: it keeps its place
    assert (await read(store, session)).assets == ["AAPL", "TSLA", "NVDA"]

    once.assets.remove("AAPL")
    twice.assets.remove("AAPL")
    await store.update_session(once.id, once)
    await store.update_session(twice.id, twice)  # removing what is gone is no error
    assert (await read(store, session)).assets == ["TSLA", "NVDA"]


async def test_order_is_the_order_of_addition_a_new_order_alone_is_not_a_write(
    store: SessionStore,
) -> None:
    session = await store.create_session(["AAPL", "MSFT", "GOOGL"], "equity", tags=["x", "y"])
    copy = await read(store, session)
    copy.assets = ["GOOGL", "AAPL", "MSFT"]
    copy.tags = ["y", "x"]
    assert changes_since_read(copy, strict=False).is_empty()
    copy.assets = ["TSLA", "GOOGL", "AAPL"]
    changes = changes_since_read(copy, strict=False)
    assert changes.assets == ListChange(["TSLA"], ["MSFT"])
    assert changes.tags is None
    await store.update_session(copy.id, copy)
    assert (await read(store, session)).assets == ["AAPL", "GOOGL", "TSLA"]


async def test_a_session_its_caller_built_sets_its_lists_whole(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", tags=["old"])
    other = await read(store, session)
    other.assets.append("TSLA")
    await store.update_session(other.id, other)

    built = Session.from_dict(session.to_dict())  # no baseline: nothing to diff against
    built.assets = ["MSFT", "AAPL"]
    built.tags = []
    assert changes_since_read(built, strict=False).assets == ListChange(
        ["MSFT", "AAPL"], replace=True
    )
    await store.update_session(built.id, built)
    final = await read(store, session)
    assert final.assets == ["MSFT", "AAPL"]
    assert final.tags == []


async def test_tags_emptied_and_unusual_labels_round_trip(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1", tags=["only"])
    copy = await read(store, session)
    copy.tags = []
    await store.update_session(copy.id, copy)
    assert (await read(store, session)).tags == []
    (listed,) = await store.list_user_sessions("u1")
    assert listed.tags == []

    copy = await read(store, session)
    labels = ["a/b", "é ü", 'say "hi"', "back\\slash", "日本"]
    copy.tags = labels
    copy.assets.append("BRK/B")
    await store.update_session(copy.id, copy)
    final = await read(store, session)
    assert final.tags == labels
    assert final.assets == ["AAPL", "BRK/B"]
    (listed,) = await store.list_user_sessions("u1")
    assert listed.tags == labels and listed.assets == ["AAPL", "BRK/B"]


async def assert_refused_and_unchanged(
    store: SessionStore, refused: Session, field: str, size: int | None
) -> None:
    """``refused`` carries a list change, a state key and a query; the write that would
    break ``field``'s limits after its merge must raise and write none of them. ``size``:
    how many elements the merge would have left (None: not checked)."""
    before = await read(store, refused)
    refused.state.update_context("refused", True)
    refused.add_query(a_query())
    with pytest.raises(InvalidInputError) as caught:
        await store.update_session(refused.id, refused)
    assert caught.value.field == field
    if size is not None:
        assert caught.value.value == size
    after = await read(store, refused)
    assert after.model_dump() == before.model_dump()


async def test_a_merge_past_the_asset_limit_is_refused_and_changes_nothing(
    store: SessionStore,
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    first, second = await read(store, session), await read(store, session)
    half = (MAX_ASSETS - 1) // 2 + 1
    first.assets = [*first.assets, *(f"F{n}" for n in range(half))]
    second.assets = [*second.assets, *(f"S{n}" for n in range(MAX_ASSETS - half))]
    assert len(first.assets) + len(second.assets) - 1 == MAX_ASSETS + 1
    await store.update_session(first.id, first)

    await assert_refused_and_unchanged(store, second, "assets", MAX_ASSETS + 1)

    second.assets.pop()  # the refused session keeps its baseline: fix it and resend
    await store.update_session(second.id, second)
    final = await read(store, session)
    assert len(final.assets) == MAX_ASSETS
    assert final.state.context == {"refused": True}


async def test_a_merge_past_the_tag_limit_is_refused_and_changes_nothing(
    store: SessionStore,
) -> None:
    session = await store.create_session(["AAPL"], "equity", tags=["t"])
    first, second = await read(store, session), await read(store, session)
    first.tags = [*first.tags, *(f"f{n}" for n in range(MAX_TAGS // 2))]
    second.tags = [*second.tags, *(f"s{n}" for n in range(MAX_TAGS // 2))]
    await store.update_session(first.id, first)
    await assert_refused_and_unchanged(store, second, "tags", MAX_TAGS + 1)


async def test_removing_the_last_asset_through_a_merge_is_refused(store: SessionStore) -> None:
    session = await store.create_session(["AAPL", "MSFT"], "equity")
    first, second = await read(store, session), await read(store, session)
    first.assets.remove("AAPL")
    await store.update_session(first.id, first)
    second.assets.remove("MSFT")  # fine on its own copy, empty once merged
    await assert_refused_and_unchanged(store, second, "assets", 0)
    assert (await read(store, session)).assets == ["MSFT"]


async def test_a_whole_list_is_held_to_the_limits_too(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity")
    built = Session.from_dict(session.to_dict())
    built.assets.clear()  # in place, past the model's own check
    await assert_refused_and_unchanged(store, built, "assets", None)


async def test_strict_refuses_a_list_edit_after_any_concurrent_write(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", tags=["t"])
    stale, other = await read(store, session), await read(store, session)
    other.assets.append("NVDA")
    await store.update_session(other.id, other)

    stale.assets.append("TSLA")
    stale.tags.append("u")
    with pytest.raises(SessionConflictError):
        await store.update_session(stale.id, stale, strict=True)
    final = await read(store, session)
    assert final.assets == ["AAPL", "NVDA"] and final.tags == ["t"]

    fresh = await read(store, session)
    fresh.assets.remove("AAPL")
    fresh.assets.append("TSLA")
    await store.update_session(fresh.id, fresh, strict=True)
    assert (await read(store, session)).assets == ["NVDA", "TSLA"]
