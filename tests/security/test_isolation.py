"""Per-user isolation beyond ``tests/mcp/test_isolation.py``.

That suite shows an active foreign session looks exactly like an unknown one to every tool
over an in-memory client. Here: foreign sessions in every state (closed, expired and
archived sessions must not answer "read-only" to a stranger), the same over HTTP with
bearer tokens for every tool and the resource, identity never taken from an argument, and
cursors that carry no one's identity.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import CallToolResult

from fiml.mcp import Identity, StaticIdentity, build_server
from tests.fuzz.harness import Harness, assert_valid_result, error_message, owned_ids

UNKNOWN = "00000000-0000-4000-8000-000000000000"
STATES = ["own", "closed", "expired", "archived"]
"""alice's sessions of the harness pool, one per state ("own" is active)."""

SESSION_TOOLS: list[tuple[str, dict[str, Any]]] = [
    ("get-session-info", {}),
    ("get-session-history", {"offset": 0, "limit": 5}),
    ("extend-session", {"hours": 1}),
    ("close-analysis-session", {}),
    ("update-session-context", {"context": {"owner": "mallory"}, "remove_context": ["thesis"]}),
    ("search-by-symbol", {"symbol": "AAPL"}),
    ("search-by-coin", {"symbol": "BTC"}),
]
TOOL_IDS = [tool for tool, _ in SESSION_TOOLS]


def http_call(harness: Harness, user: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """Call a tool over streamable HTTP with ``user``'s bearer token."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    response = harness.post(json.dumps(body).encode(), user)
    assert response.status_code == 200, response.text
    return CallToolResult.model_validate(response.json()["result"])


def http_read(harness: Harness, user: str, uri: str) -> dict[str, Any]:
    """Read a resource over streamable HTTP with ``user``'s bearer token; the JSON-RPC answer."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}
    answer: dict[str, Any] = harness.post(json.dumps(body).encode(), user).json()
    return answer


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(("tool", "arguments"), SESSION_TOOLS, ids=TOOL_IDS)
def test_a_foreign_session_in_any_state_looks_unknown_in_memory(
    harness: Harness, tool: str, arguments: dict[str, Any], state: str
) -> None:
    sid = harness.session(state)
    before = harness.state()

    foreign = error_message(harness.call(tool, {"session_id": sid, **arguments}, "bob"))
    unknown = error_message(harness.call(tool, {"session_id": UNKNOWN, **arguments}, "bob"))

    assert foreign == unknown.replace(UNKNOWN, sid)
    assert foreign.endswith(f"session {sid} not found")
    assert harness.state() == before


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(("tool", "arguments"), SESSION_TOOLS, ids=TOOL_IDS)
def test_a_foreign_session_in_any_state_looks_unknown_over_http(
    harness: Harness, tool: str, arguments: dict[str, Any], state: str
) -> None:
    sid = harness.session(state)
    before = harness.state()

    foreign = error_message(http_call(harness, "bob", tool, {"session_id": sid, **arguments}))
    unknown = error_message(http_call(harness, "bob", tool, {"session_id": UNKNOWN, **arguments}))

    assert foreign == unknown.replace(UNKNOWN, sid)
    assert foreign.endswith(f"session {sid} not found")
    assert harness.state() == before


def test_the_owners_token_reaches_the_session_over_http(harness: Harness) -> None:
    """The control for the test above: the same call with alice's token succeeds."""
    sid = harness.session("own")

    info = http_call(harness, "alice", "get-session-info", {"session_id": sid})

    assert assert_valid_result(info, harness.tools["get-session-info"])["context"] == {
        "thesis": "fuzzing"
    }


@pytest.mark.parametrize("state", STATES)
def test_a_foreign_session_resource_in_any_state_reads_as_unknown(
    harness: Harness, state: str
) -> None:
    sid = harness.session(state)

    foreign, unknown = (harness.read(f"session://{s}", "bob") for s in (sid, UNKNOWN))
    foreign_http, unknown_http = (
        http_read(harness, "bob", f"session://{s}") for s in (sid, UNKNOWN)
    )

    assert isinstance(foreign, MCPError) and isinstance(unknown, MCPError)
    assert str(foreign) == str(unknown).replace(UNKNOWN, sid)
    assert (foreign.error.code, foreign.error.message) == (
        unknown.error.code,
        unknown.error.message.replace(UNKNOWN, sid),
    )
    assert "result" not in foreign_http and "result" not in unknown_http
    assert foreign_http["error"]["message"] == unknown_http["error"]["message"].replace(
        UNKNOWN, sid
    )
    assert foreign_http["error"]["code"] == unknown_http["error"]["code"]


@pytest.mark.parametrize("via", ["memory", "http"])
def test_an_argument_never_overrides_who_the_caller_is(harness: Harness, via: str) -> None:
    """Extra user_id / owner arguments are ignored: bob stays bob."""

    def call(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        if via == "http":
            return http_call(harness, "bob", tool, arguments)
        return harness.call(tool, arguments, "bob")

    impersonation = {"user_id": "alice", "user": "alice", "owner": "alice", "role": "admin"}
    created = call(
        "create-analysis-session", {"assets": ["TSLA"], "session_type": "equity", **impersonation}
    )
    new_sid = assert_valid_result(created, harness.tools["create-analysis-session"])["session_id"]
    listed = call("list-sessions", {"include_archived": True, "limit": 1000, **impersonation})
    info = call("get-session-info", {"session_id": harness.session("own"), **impersonation})
    everyone = call("get-session-analytics", {"all_users": True, "role": "admin"})

    listed_ids = {
        s["session_id"]
        for s in assert_valid_result(listed, harness.tools["list-sessions"])["sessions"]
    }
    assert new_sid in listed_ids
    assert harness.session("own") not in listed_ids and harness.session("closed") not in listed_ids
    assert new_sid not in {
        s["session_id"]
        for s in assert_valid_result(
            harness.call("list-sessions", {"include_archived": True, "limit": 1000}, "alice"),
            harness.tools["list-sessions"],
        )["sessions"]
    }
    assert error_message(info).endswith(f"session {harness.session('own')} not found")
    assert error_message(everyone).endswith("requires the 'admin' role")


def test_a_cursor_from_another_users_listing_shows_only_the_callers_sessions(
    harness: Harness,
) -> None:
    for _ in range(3):
        harness.new_session("alice")
    first = assert_valid_result(
        harness.call("list-sessions", {"limit": 1, "include_archived": True}, "alice"),
        harness.tools["list-sessions"],
    )
    assert first["next_cursor"] is not None

    page = harness.call(
        "list-sessions", {"cursor": first["next_cursor"], "include_archived": True}, "bob"
    )

    shown = {
        s["session_id"]
        for s in assert_valid_result(page, harness.tools["list-sessions"])["sessions"]
    }
    assert shown and shown <= owned_ids(harness, "bob")
    assert not shown & owned_ids(harness, "alice")


@pytest.mark.parametrize("lookalike", ["Alice", "ALICE", "alice\u200b", "\u0430lice"])
def test_users_whose_names_only_look_alike_are_different_users(
    harness: Harness, lookalike: str
) -> None:
    """Case, a zero-width space, a Cyrillic a: none of them is alice."""

    async def as_lookalike() -> tuple[CallToolResult, CallToolResult]:
        served = harness.served
        server = build_server(
            store=served.store,
            market=served.market,
            identity=StaticIdentity(Identity(lookalike)),
        )
        async with Client(server) as client:
            listed = await client.call_tool("list-sessions", {"include_archived": True})
            info = await client.call_tool(
                "get-session-info", {"session_id": harness.session("own")}
            )
        return listed, info

    listed, info = harness.run(as_lookalike)

    assert assert_valid_result(listed, harness.tools["list-sessions"])["sessions"] == []
    assert error_message(info).endswith(f"session {harness.session('own')} not found")


SEARCHES: list[dict[str, Any]] = [
    {},
    {"asset": "MSFT"},
    {"tag": "fresh"},
    {"session_type": "equity"},
    {"text": "thesis growth"},
    {"include_archived": False, "limit": 1000},
]


@pytest.mark.parametrize("via", ["memory", "http"])
def test_search_finds_only_the_callers_sessions(harness: Harness, via: str) -> None:
    """The same searches by alice and by bob, in memory and over HTTP with each one's
    token: each sees some of their own sessions, never one of the other's."""
    harness.new_session("alice")
    harness.new_session("bob")
    tool = harness.tools["search-sessions"]
    for user, other in (("alice", "bob"), ("bob", "alice")):
        seen: set[str] = set()
        for criteria in SEARCHES:
            if via == "http":
                result = http_call(harness, user, "search-sessions", criteria)
            else:
                result = harness.call("search-sessions", criteria, user)
            found = {s["session_id"] for s in assert_valid_result(result, tool)["sessions"]}
            assert not found & owned_ids(harness, other), (user, criteria)
            assert found <= owned_ids(harness, user), (user, criteria)
            seen |= found
        assert seen, user  # the searches do find the caller's own sessions
