"""A real ``python -m fiml.mcp --http`` on localhost, driven by the SDK's HTTP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import MCPError

from tests.mcp.conftest import fails, new_session, ok
from tests.mcp.live_servers import (
    ACCEPT,
    INITIALIZE,
    http_client,
    http_server,
    run_workflow,
    write_tokens,
)

TIMEOUT = 120


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return write_tokens(tmp_path / "tokens.json", alice="user", bob="user", root="admin")


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_the_whole_workflow_over_http(
    tmp_path: Path, tokens: dict[str, str], stateless: bool
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=stateless) as server,
            http_client(server.url, tokens["alice"]) as alice,
        ):
            await run_workflow(alice)


async def test_requests_without_a_valid_token_get_401(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json") as server,
            httpx.AsyncClient(timeout=30) as http,
        ):
            anonymous = await http.post(server.url, json=INITIALIZE, headers=ACCEPT)
            wrong = await http.post(
                server.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer nope"}
            )
            not_bearer = await http.post(
                server.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": tokens["alice"]}
            )
            valid = await http.post(
                server.url,
                json=INITIALIZE,
                headers={**ACCEPT, "Authorization": f"Bearer {tokens['alice']}"},
            )

    for refused in (anonymous, wrong, not_bearer):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert valid.status_code == 200


async def test_the_sdk_client_cannot_connect_with_a_wrong_token(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with http_server(tmp_path, tmp_path / "tokens.json") as server:
            statuses: list[int] = []
            with pytest.raises(Exception):  # noqa: B017 - the SDK reports it as it likes
                async with http_client(server.url, "not-a-token", statuses=statuses) as client:
                    await client.list_tools()

    assert statuses and set(statuses) == {401}


async def test_one_token_cannot_reach_another_users_session(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=True) as server,
            http_client(server.url, tokens["alice"]) as alice,
            http_client(server.url, tokens["bob"]) as bob,
        ):
            sid = await new_session(alice, "AAPL")
            await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
            before = await ok(alice, "get-session-info", session_id=sid)

            attempts: list[tuple[str, dict[str, Any]]] = [
                ("get-session-info", {}),
                ("get-session-history", {}),
                ("extend-session", {"hours": 1}),
                ("close-analysis-session", {}),
                ("update-session-context", {"context": {"owner": "bob"}}),
                ("search-by-symbol", {"symbol": "AAPL"}),
                ("search-by-coin", {"symbol": "BTC"}),
                ("get-session-timeline", {}),
                ("fork-session", {"after_queries": 1}),
            ]
            messages = [await fails(bob, tool, session_id=sid, **a) for tool, a in attempts]
            with pytest.raises(MCPError, match="not found"):
                await bob.read_resource(f"session://{sid}")
            bobs_list = await ok(bob, "list-sessions", include_archived=True)
            bobs_stats = await ok(bob, "get-session-analytics")
            denied = await fails(bob, "get-session-analytics", user_id="alice")
            timeline = await ok(alice, "get-session-timeline", session_id=sid)
            fork = await ok(alice, "fork-session", session_id=sid, after_queries=1)
            after = await ok(alice, "get-session-info", session_id=sid)

    assert all(m.endswith(f"session {sid} not found") for m in messages), messages
    assert bobs_list["sessions"] == []
    assert [e["kind"] for e in timeline["events"]] == ["query"]
    assert fork["forked_from"] == sid and fork["total_queries"] == 1
    assert (bobs_stats["total_sessions"], bobs_stats["active_sessions"]) == (0, 0)
    assert denied.endswith("requires the 'admin' role")
    assert after["stats"] == before["stats"]
    assert after["session"]["expires_at"] == before["session"]["expires_at"]
    assert after["session"]["status"] == "active"
    assert after["context"] == {}


async def test_an_admin_token_reads_another_users_analytics(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json") as server,
            http_client(server.url, tokens["alice"]) as alice,
            http_client(server.url, tokens["root"]) as root,
        ):
            sid = await new_session(alice, "AAPL")
            await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)

            stats = await ok(root, "get-session-analytics", user_id="alice")

    assert (stats["user_id"], stats["total_sessions"], stats["active_sessions"]) == ("alice", 1, 1)


async def test_stateless_processes_share_analysis_sessions(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    """Two processes behind a 'load balancer': a session opened on one is used on the other."""
    path = tmp_path / "tokens.json"
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, path, stateless=True) as one,
            http_server(tmp_path, path, stateless=True) as other,
            http_client(one.url, tokens["alice"]) as first,
            http_client(other.url, tokens["alice"]) as second,
        ):
            sid = await new_session(first, "AAPL", "MSFT")
            await ok(second, "search-by-symbol", symbol="AAPL", session_id=sid)
            await ok(first, "search-by-symbol", symbol="MSFT", session_id=sid)
            tracked = await ok(second, "search-by-symbol", symbol="AAPL", session_id=sid)
            info = await ok(first, "get-session-info", session_id=sid, recent_queries=3)

    assert tracked["session"]["total_queries"] == 3
    assert info["stats"]["total_queries"] == 3
    assert [q["parameters"]["symbol"] for q in info["recent_queries"]] == ["AAPL", "MSFT", "AAPL"]


async def test_the_server_log_holds_no_token_and_no_context_value(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    secret = "confidential-thesis-7731"
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", access_log=True) as server,
            http_client(server.url, tokens["alice"]) as alice,
        ):
            sid = await new_session(alice, "AAPL")
            await ok(alice, "update-session-context", session_id=sid, context={"note": secret})
            await fails(
                alice, "update-session-context", session_id=sid, context={"n": secret * 9000}
            )
            await ok(alice, "get-session-info", session_id=sid)
            await ok(alice, "search-by-symbol", symbol="AAPL", session_id=sid)
            log = bytes(server.log)

    assert b"POST /mcp" in log  # the log was captured, access lines included
    assert tokens["alice"].encode() not in log
    assert secret.encode() not in log
