"""share-session, unshare-session, list-shared-sessions and the templates, through the
in-memory client with several users."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import uuid4

import pytest
from mcp import Client, MCPError
from mcp.types import TextResourceContents

from fiml.core.audit import AUDIT_LOGGER
from fiml.core.logs import event_fields
from fiml.mcp.replies import reply_bytes
from fiml.sessions.store import SessionStore
from tests.mcp.conftest import WRITE_IDS, WRITES, Connect, fails, new_session, ok, snapshot


async def _resource(client: Client, sid: str) -> dict[str, Any]:
    read = await client.read_resource(f"session://{sid}")
    [content] = read.contents
    assert isinstance(content, TextResourceContents)
    loaded: dict[str, Any] = json.loads(content.text)
    return loaded


async def _shared(alice: Client) -> str:
    sid = await new_session(alice, "AAPL")
    await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
    await ok(alice, "update-session-context", session_id=sid, context={"thesis": "long"})
    shared = await ok(alice, "share-session", session_id=sid, user_id="bob")
    assert shared == {"session_id": sid, "user_id": "bob", "shared": True, "changed": True}
    return sid


async def test_the_reader_reads_info_history_and_the_resource(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await _shared(alice)

        info = await ok(bob, "get-session-info", session_id=sid)
        history = await ok(bob, "get-session-history", session_id=sid)
        resource = await _resource(bob, sid)
        owners_view = await ok(alice, "get-session-info", session_id=sid)

    for view in (info, owners_view):
        view["session"].pop("time_remaining_seconds")  # a second may pass between the two
    assert info == owners_view
    assert info["context"] == {"thesis": "long"}
    assert [q["parameters"]["symbol"] for q in history["queries"]] == ["AAPL"]
    assert resource["session"]["session_id"] == sid


async def test_the_reader_lists_it_as_shared_not_as_theirs(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await _shared(alice)
        own = await new_session(bob, "BTC", session_type="crypto")

        shared = await ok(bob, "list-shared-sessions")
        theirs = await ok(bob, "list-sessions", include_archived=True)
        alices_shared = await ok(alice, "list-shared-sessions")

    [item] = shared["sessions"]
    assert (item["session_id"], item["owner"], item["total_queries"]) == (sid, "alice", 1)
    assert [s["session_id"] for s in theirs["sessions"]] == [own]
    assert alices_shared["sessions"] == []


@pytest.mark.parametrize(("tool", "arguments"), WRITES, ids=WRITE_IDS)
async def test_every_write_by_the_reader_is_refused_as_for_an_unknown_session(
    connect: Connect, session_store: SessionStore, tool: str, arguments: dict[str, Any]
) -> None:
    unknown = str(uuid4())
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await _shared(alice)
        before = await snapshot(session_store, sid)

        refused = await fails(bob, tool, session_id=sid, **arguments)
        missing = await fails(bob, tool, session_id=unknown, **arguments)

    assert refused == missing.replace(unknown, sid)
    assert refused.endswith(f"session {sid} not found")
    assert await snapshot(session_store, sid) == before


async def test_the_reader_can_neither_pass_it_on_nor_revoke_it(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob, connect("carol") as carol:
        sid = await _shared(alice)

        passed_on = await fails(bob, "share-session", session_id=sid, user_id="carol")
        revoked = await fails(bob, "unshare-session", session_id=sid, user_id="bob")
        carols = await fails(carol, "get-session-info", session_id=sid)
        await ok(bob, "get-session-info", session_id=sid)

    assert passed_on.endswith(f"session {sid} not found")
    assert revoked.endswith(f"session {sid} not found")
    assert carols.endswith(f"session {sid} not found")


async def test_unsharing_refuses_the_readers_next_read(connect: Connect) -> None:
    unknown = str(uuid4())
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await _shared(alice)
        await ok(bob, "get-session-info", session_id=sid)

        revoked = await ok(alice, "unshare-session", session_id=sid, user_id="bob")
        info = await fails(bob, "get-session-info", session_id=sid)
        missing = await fails(bob, "get-session-info", session_id=unknown)
        history = await fails(bob, "get-session-history", session_id=sid)
        with pytest.raises(MCPError) as resource:
            await bob.read_resource(f"session://{sid}")
        listed = await ok(bob, "list-shared-sessions")

    assert (revoked["shared"], revoked["changed"]) == (False, True)
    assert info == missing.replace(unknown, sid)
    assert history.endswith(f"session {sid} not found")
    assert f"session {sid} not found" in str(resource.value)
    assert listed["sessions"] == []


async def test_an_archived_shared_session_stays_readable(
    connect: Connect, session_store: SessionStore
) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        sid = await _shared(alice)
        await ok(alice, "close-analysis-session", session_id=sid)
        assert await session_store.archive_session(sid)

        info = await ok(bob, "get-session-info", session_id=sid)
        listed = await ok(bob, "list-shared-sessions")

    assert info["session"]["status"] == "archived"
    assert [s["status"] for s in listed["sessions"]] == ["archived"]


async def test_sharing_with_oneself_is_refused_naming_user_id(connect: Connect) -> None:
    async with connect("alice") as alice:
        sid = await new_session(alice)

        refused = await fails(alice, "share-session", session_id=sid, user_id="alice")

    assert "user_id" in refused


async def test_a_session_made_from_a_template_starts_with_it(connect: Connect) -> None:
    async with connect("alice") as alice:
        saved = await ok(
            alice,
            "save-session-template",
            name="watch",
            assets=["aapl", "msft"],
            session_type="equity",
            tags=["daily"],
            ttl_hours=3,
            preferences={"currency": "EUR"},
        )
        created = await ok(alice, "create-analysis-session", template="watch")
        info = await ok(alice, "get-session-info", session_id=created["session_id"])
        listed = await ok(alice, "list-session-templates")

    assert saved["assets"] == ["AAPL", "MSFT"]
    assert (created["assets"], created["session_type"], created["tags"]) == (
        ["AAPL", "MSFT"],
        "equity",
        ["daily"],
    )
    assert 3 * 3600 - 60 < created["time_remaining_seconds"] <= 3 * 3600
    assert info["preferences"] == {"currency": "EUR"}
    assert [t["name"] for t in listed["templates"]] == ["watch"]
    assert listed["templates"][0] == saved


async def test_explicit_arguments_override_the_template(connect: Connect) -> None:
    async with connect("alice") as alice:
        await ok(
            alice,
            "save-session-template",
            name="watch",
            assets=["AAPL"],
            session_type="equity",
            tags=["daily"],
            ttl_hours=3,
        )

        created = await ok(
            alice,
            "create-analysis-session",
            template="watch",
            assets=["BTC"],
            session_type="crypto",
            tags=[],
            ttl_hours=1,
        )

    assert (created["assets"], created["session_type"], created["tags"]) == (
        ["BTC"],
        "crypto",
        [],
    )
    assert created["time_remaining_seconds"] <= 3600


async def test_a_template_is_its_owners_only(connect: Connect, session_store: SessionStore) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        await ok(
            alice, "save-session-template", name="watch", assets=["AAPL"], session_type="equity"
        )

        refused = await fails(bob, "create-analysis-session", template="watch")
        missing = await fails(bob, "create-analysis-session", template="never-saved")
        listed = await ok(bob, "list-session-templates")
        sessions = await ok(bob, "list-sessions")

    assert "template" in refused
    assert refused == missing.replace("never-saved", "watch")
    assert listed["templates"] == []
    assert sessions["sessions"] == []


@pytest.mark.parametrize("missing", ["assets", "session_type"])
async def test_without_a_template_assets_and_type_are_required(
    connect: Connect, missing: str
) -> None:
    arguments: dict[str, Any] = {"assets": ["AAPL"], "session_type": "equity"}
    del arguments[missing]
    async with connect("alice") as alice:
        refused = await fails(alice, "create-analysis-session", **arguments)
        listed = await ok(alice, "list-sessions")

    assert missing in refused
    assert listed["sessions"] == []


async def test_the_new_replies_are_compact(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        for n in range(20):
            sid = await new_session(alice, "AAPL", "MSFT", "BTC", tags=["bench"])
            await ok(alice, "share-session", session_id=sid, user_id="bob")
            await ok(
                alice,
                "save-session-template",
                name=f"template-{n:02}",
                assets=["AAPL", "MSFT", "BTC"],
                session_type="comparative",
                tags=["bench"],
                ttl_hours=4,
                preferences={"currency": "EUR"},
            )
        share = await alice.call_tool("share-session", {"session_id": sid, "user_id": "carol"})
        shared = await bob.call_tool("list-shared-sessions", {})
        templates = await alice.call_tool("list-session-templates", {})

    assert reply_bytes(share) <= 300
    assert reply_bytes(shared) <= 100 + 800 * 20  # a listed session, its owner and time, twice
    assert reply_bytes(templates) <= 100 + 500 * 20


async def test_sharing_and_unsharing_are_on_the_audit_trail(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with connect("alice") as alice:
        sid = await new_session(alice)
        caplog.clear()
        await ok(alice, "share-session", session_id=sid, user_id="bob")
        await ok(alice, "share-session", session_id=sid, user_id="bob")
        await ok(alice, "unshare-session", session_id=sid, user_id="bob")
        await ok(alice, "unshare-session", session_id=sid, user_id="bob")

    records = [event_fields(r) for r in caplog.records if r.name == AUDIT_LOGGER]
    assert [
        (r["actor"], r["action"], r["outcome"], r["reader"], r["session_id"]) for r in records
    ] == [
        ("alice", "share", "ok", "bob", sid),
        ("alice", "share", "had", "bob", sid),
        ("alice", "unshare", "ok", "bob", sid),
        ("alice", "unshare", "absent", "bob", sid),
    ]
