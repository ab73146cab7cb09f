"""``resources/list``: the caller's sessions as ``session://`` resources, paged by cursor."""

from __future__ import annotations

import json

import pytest
from mcp import MCPError
from mcp.types import TextResourceContents

from fiml.mcp.resource_listing import RESOURCE_PAGE_SIZE
from fiml.sessions.store import SessionStore
from tests.mcp.conftest import Connect, new_session


async def test_the_callers_sessions_are_listed_newest_first_a_page_at_a_time(
    connect: Connect, session_store: SessionStore
) -> None:
    created = [
        str((await session_store.create_session(["AAPL"], "equity", user_id="alice")).id)
        for _ in range(RESOURCE_PAGE_SIZE + 1)
    ]
    await session_store.create_session(["BTC"], "crypto", user_id="bob")
    async with connect("alice") as alice, connect("bob") as bob:
        first = await alice.list_resources()
        assert first.next_cursor is not None
        second = await alice.list_resources(cursor=first.next_cursor)
        bobs = await bob.list_resources()

    uris = [r.uri for r in first.resources + second.resources]
    assert len(first.resources) == RESOURCE_PAGE_SIZE
    assert second.next_cursor is None
    assert uris == [f"session://{sid}" for sid in reversed(created)]
    assert all(r.mime_type == "application/json" for r in first.resources)
    assert len(bobs.resources) == 1 and str(bobs.resources[0].uri) not in uris


async def test_a_listed_session_reads_as_its_resource_and_a_new_one_is_listed_at_once(
    connect: Connect,
) -> None:
    async with connect("alice") as alice:
        assert (await alice.list_resources()).resources == []
        sid = await new_session(alice, "AAPL")

        [listed] = (await alice.list_resources()).resources
        read = await alice.read_resource(str(listed.uri))

    [content] = read.contents
    assert isinstance(content, TextResourceContents)
    assert json.loads(content.text)["session"]["session_id"] == sid


@pytest.mark.parametrize("cursor", ["not-a-cursor", "\ud800", "x" * 10_000])
async def test_a_cursor_this_server_did_not_make_is_refused(connect: Connect, cursor: str) -> None:
    async with connect("alice") as alice:
        await new_session(alice)

        with pytest.raises(MCPError) as refused:
            await alice.list_resources(cursor=cursor)

    assert "invalid cursor" in str(refused.value)
