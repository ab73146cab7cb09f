"""Sharing a session read-only, on every deployment in ``STORE_KINDS``.

The grants live in SQL on every deployment; these tests hold them to the contract through
the public API: a reader reads exactly what is shared with them, for as long as it is, in
every state of the session (archived included), and nothing else.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fiml.core.errors import InvalidCursorError, InvalidInputError, SessionNotFoundError
from fiml.sessions import QueryRecord, SessionStore
from fiml.sessions.models import SessionStatus
from fiml.sessions.sharing import MAX_READERS, SessionSharing, readable_session
from tests.clock import MovableClock
from tests.sessions.test_owned_reads import spy_on_loads

UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def _alices(store: SessionStore) -> str:
    session = await store.create_session(["AAPL", "MSFT"], "equity", user_id="alice")
    await store.append_query(
        session.id, QueryRecord(query_type="price", parameters={"symbol": "AAPL"})
    )
    return str(session.id)


async def _not_found(store: SessionStore, caller: str, session_id: str) -> str:
    with pytest.raises(SessionNotFoundError) as refused:
        await readable_session(store, caller, session_id)
    return str(refused.value)


async def test_a_shared_session_is_readable_by_its_reader_until_unshared(
    store: SessionStore,
) -> None:
    sid = await _alices(store)
    sharing = SessionSharing(store)

    first = await sharing.share("alice", sid, "bob")
    again = await sharing.share("alice", sid, "bob")
    read = await readable_session(store, "bob", sid)

    assert (first.shared, first.changed, again.changed) == (True, True, False)
    assert str(read.id) == sid and read.user_id == "alice"
    assert read.state.history.total_queries == 1

    revoked = await sharing.unshare("alice", sid, "bob")

    assert (revoked.shared, revoked.changed) == (False, True)
    assert await _not_found(store, "bob", sid) == f"session {sid} not found"
    assert not (await sharing.unshare("alice", sid, "bob")).changed


async def test_a_session_not_shared_with_the_caller_looks_unknown(store: SessionStore) -> None:
    sid = await _alices(store)
    await SessionSharing(store).share("alice", sid, "bob")

    foreign = await _not_found(store, "carol", sid)
    unknown = await _not_found(store, "carol", UNKNOWN)

    assert foreign == unknown.replace(UNKNOWN, sid)


async def test_an_archived_session_stays_shared_and_unsharable(store: SessionStore) -> None:
    sid = await _alices(store)
    sharing = SessionSharing(store)
    await sharing.share("alice", sid, "bob")

    assert await store.archive_session(sid)
    read = await readable_session(store, "bob", sid)

    assert read.status is SessionStatus.ARCHIVED
    assert read.state.history.total_queries == 1
    await sharing.unshare("alice", sid, "bob")
    await _not_found(store, "bob", sid)


async def test_an_archived_session_can_be_shared(store: SessionStore) -> None:
    sid = await _alices(store)
    assert await store.archive_session(sid)

    await SessionSharing(store).share("alice", sid, "bob")

    assert (await readable_session(store, "bob", sid)).status is SessionStatus.ARCHIVED


async def test_only_the_owner_shares_and_never_with_themselves(store: SessionStore) -> None:
    sid = await _alices(store)
    sharing = SessionSharing(store)
    await sharing.share("alice", sid, "bob")

    with pytest.raises(SessionNotFoundError):
        await sharing.share("bob", sid, "carol")  # a reader cannot pass it on
    with pytest.raises(SessionNotFoundError):
        await sharing.unshare("bob", sid, "bob")  # nor revoke it
    with pytest.raises(InvalidInputError) as own:
        await sharing.share("alice", sid, "alice")
    assert own.value.field == "user_id"
    for bad in ("", "x" * 256, 7, None, "nul\x00"):
        with pytest.raises(InvalidInputError) as refused:
            await sharing.share("alice", sid, bad)  # type: ignore[arg-type]
        assert refused.value.field == "user_id"

    await _not_found(store, "carol", sid)
    assert (await readable_session(store, "bob", sid)).user_id == "alice"


async def test_a_session_is_shared_with_at_most_max_readers(store: SessionStore) -> None:
    sid = await _alices(store)
    sharing = SessionSharing(store)
    for n in range(MAX_READERS):
        await sharing.share("alice", sid, f"reader{n}")

    with pytest.raises(InvalidInputError) as full:
        await sharing.share("alice", sid, "one-too-many")

    assert full.value.field == "user_id"
    assert not (await sharing.share("alice", sid, "reader0")).changed  # re-sharing is no grant
    await _not_found(store, "one-too-many", sid)


async def test_the_shared_listing_pages_newest_first_and_skips_deleted_sessions(
    store: SessionStore, clock: MovableClock
) -> None:
    sharing = SessionSharing(store)
    ids = []
    for owner in ("alice", "carol", "alice", "dave", "alice"):
        session = await store.create_session(["AAPL"], "equity", user_id=owner)
        await sharing.share(owner, session.id, "bob")
        ids.append(str(session.id))
        clock.move(timedelta(milliseconds=5))
    mine = await store.create_session(["BTC"], "crypto", user_id="bob")
    await store.delete_session(ids[1])

    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = await sharing.shared_with("bob", limit=2, cursor=cursor)
        seen += [(str(s.id), grant.owner_id) for grant, s in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [(ids[4], "alice"), (ids[3], "dave"), (ids[2], "alice"), (ids[0], "alice")]
    assert str(mine.id) not in {sid for sid, _ in seen}  # their own sessions are not "shared"
    assert (await sharing.shared_with("carol")).sessions == []
    again = await sharing.shared_with("bob", limit=10)
    assert [str(s.id) for _, s in again.sessions] == [ids[4], ids[3], ids[2], ids[0]]
    with pytest.raises(InvalidCursorError):
        await sharing.shared_with("bob", cursor="not a cursor")


async def test_a_deleted_session_is_no_longer_readable_by_its_reader(
    store: SessionStore,
) -> None:
    sid = await _alices(store)
    await SessionSharing(store).share("alice", sid, "bob")

    await store.delete_session(sid)

    deleted = await _not_found(store, "bob", sid)
    assert deleted == (await _not_found(store, "bob", UNKNOWN)).replace(UNKNOWN, sid)


@pytest.mark.parametrize("state", ["active", "archived"])
async def test_a_session_not_shared_with_the_caller_costs_the_reads_of_an_unknown_id(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    sid = await _alices(store)
    await SessionSharing(store).share("alice", sid, "bob")
    if state == "archived":
        await store.archive_session(sid)
    loads = spy_on_loads(store, monkeypatch)
    lookups: list[tuple[str, bool]] = []
    real_lookup = store.archive.share_owner

    async def counted_lookup(session_id: Any, reader_id: str) -> str | None:
        owner = await real_lookup(session_id, reader_id)
        lookups.append((reader_id, owner is None))
        return owner

    monkeypatch.setattr(store.archive, "share_owner", counted_lookup)

    await _not_found(store, "carol", sid)
    foreign = (list(loads), list(lookups))
    loads.clear()
    lookups.clear()
    await _not_found(store, "carol", UNKNOWN)

    assert foreign == (loads, lookups)
    assert lookups == [("carol", True)]
