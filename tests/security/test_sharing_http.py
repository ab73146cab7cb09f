"""Sharing over HTTP with bearer tokens, against a real ``fiml serve --http`` process.

The reader's identity comes from their token only: alice shares a session with bob, bob
reads it and is refused every write exactly as for an unknown session, carol (a third
token) cannot tell it from an unknown id, and alice's unshare refuses bob's next read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest
from mcp import MCPError

from tests.mcp.conftest import fails, new_session, ok
from tests.mcp.live_servers import http_client, http_server, write_tokens

TIMEOUT = 120
WRITES: list[tuple[str, dict[str, Any]]] = [
    ("extend-session", {"hours": 1}),
    ("close-analysis-session", {}),
    ("update-session-context", {"context": {"owner": "bob"}}),
    ("search-by-symbol", {"symbol": "AAPL"}),
    ("search-by-coin", {"symbol": "BTC"}),
    ("share-session", {"user_id": "carol"}),
    ("unshare-session", {"user_id": "bob"}),
]
"""Everything a reader might try that would change the session or its grants."""


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_a_shared_session_over_http_is_read_only_to_its_reader_until_unshared(
    tmp_path: Path, stateless: bool
) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", alice="user", bob="user", carol="user")
    unknown = str(uuid4())
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=stateless) as server,
            http_client(server.url, tokens["alice"]) as alice,
            http_client(server.url, tokens["bob"]) as bob,
            http_client(server.url, tokens["carol"]) as carol,
        ):
            sid = await new_session(alice, "AAPL")
            await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
            await ok(alice, "share-session", session_id=sid, user_id="bob")
            before = await ok(alice, "get-session-info", session_id=sid)

            read = await ok(bob, "get-session-info", session_id=sid)
            history = await ok(bob, "get-session-history", session_id=sid)
            resource = await bob.read_resource(f"session://{sid}")
            listed = await ok(bob, "list-shared-sessions")
            refused = [await fails(bob, tool, session_id=sid, **a) for tool, a in WRITES]
            unknowns = [await fails(bob, tool, session_id=unknown, **a) for tool, a in WRITES]
            carols = await fails(carol, "get-session-info", session_id=sid)
            carols_unknown = await fails(carol, "get-session-info", session_id=unknown)
            carols_list = await ok(carol, "list-shared-sessions")
            after = await ok(alice, "get-session-info", session_id=sid)
            alices_resources = await alice.list_resources()
            bobs_resources = await bob.list_resources()

            await ok(alice, "unshare-session", session_id=sid, user_id="bob")
            revoked = await fails(bob, "get-session-info", session_id=sid)
            with pytest.raises(MCPError, match="not found"):
                await bob.read_resource(f"session://{sid}")
            listed_after = await ok(bob, "list-shared-sessions")

    assert read["stats"]["total_queries"] == 1
    assert [q["parameters"]["symbol"] for q in history["queries"]] == ["AAPL"]
    assert resource.contents
    assert [(s["session_id"], s["owner"]) for s in listed["sessions"]] == [(sid, "alice")]
    assert refused == [m.replace(unknown, sid) for m in unknowns]
    assert all(m.endswith(f"session {sid} not found") for m in refused), refused
    assert carols == carols_unknown.replace(unknown, sid)
    assert carols_list["sessions"] == []
    assert after["stats"] == before["stats"]
    assert after["session"]["expires_at"] == before["session"]["expires_at"]
    assert (after["session"]["status"], after["context"]) == ("active", {})
    assert [str(r.uri) for r in alices_resources.resources] == [f"session://{sid}"]
    assert bobs_resources.resources == []  # resources/list is the caller's own sessions
    assert revoked == carols_unknown.replace(unknown, sid)
    assert listed_after["sessions"] == []
