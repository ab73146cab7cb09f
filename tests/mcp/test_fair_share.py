"""No user can starve the others: per-user limits on a real ``python -m fiml.mcp --http``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError

from fiml.core.config import Settings
from tests.mcp.conftest import ok
from tests.mcp.live_servers import ACCEPT, INITIALIZE, http_client, http_server, write_tokens

TIMEOUT = 120
SESSIONS_PER_USER = 20
IN_FLIGHT_PER_USER = 4
LIMITS = {
    "FIML_HTTP_SESSIONS_PER_USER": str(SESSIONS_PER_USER),
    "FIML_HTTP_MAX_SESSIONS": str(SESSIONS_PER_USER * 10),
    "FIML_HTTP_IN_FLIGHT_PER_USER": str(IN_FLIGHT_PER_USER),
    # High enough that the flood below meets the session and in-flight caps, not this one.
    "FIML_HTTP_REQUESTS_PER_MINUTE_PER_USER": "100000",
}


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return write_tokens(tmp_path / "tokens.json", flooder="user", bob="user")


def _call(tool: str, request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {}},
    }


def _assert_refused(response: httpx.Response, limit: str) -> None:
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert limit in response.json()["error"]["message"]


async def _bob_works(url: str, token: str, flooding: anyio.Event, calls: list[str]) -> None:
    async with http_client(url, token) as bob:
        created = await ok(
            bob, "create-analysis-session", assets=["AAPL"], session_type="equity", ttl_hours=1
        )
        sid = str(created["session_id"])
        while not flooding.is_set():
            await ok(bob, "search-by-symbol", symbol="AAPL", session_id=sid)
            listed = await ok(bob, "list-sessions")
            assert [s["session_id"] for s in listed["sessions"]] == [sid]
            calls.append(sid)
        await ok(bob, "close-analysis-session", session_id=sid)


async def test_a_flooding_user_gets_429_while_another_is_served(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    flooder = {**ACCEPT, "Authorization": f"Bearer {tokens['flooder']}"}
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", env=LIMITS) as server,
            httpx.AsyncClient(
                timeout=60, limits=httpx.Limits(max_connections=200), headers=flooder
            ) as http,
        ):
            done = anyio.Event()
            bob_calls: list[str] = []
            opened: list[httpx.Response] = []
            refused: list[httpx.Response] = []

            async def initialize(count: int) -> None:
                for _ in range(count):
                    response = await http.post(server.url, json=INITIALIZE)
                    (opened if response.status_code == 200 else refused).append(response)

            async with anyio.create_task_group() as group:
                group.start_soon(_bob_works, server.url, tokens["bob"], done, bob_calls)
                async with anyio.create_task_group() as flood:
                    # 2,000 in all, as many at a time as the in-flight cap lets through.
                    for _ in range(IN_FLIGHT_PER_USER):
                        flood.start_soon(initialize, 2000 // IN_FLIGHT_PER_USER)
                # The flooder's sessions are exactly its cap; every other one was refused.
                assert len(opened) == SESSIONS_PER_USER
                assert len(refused) == 2000 - SESSIONS_PER_USER
                for response in refused:
                    _assert_refused(response, "open transport sessions")

                session = {
                    "mcp-session-id": opened[0].headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-06-18",
                }
                initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
                assert (await http.post(server.url, json=initialized, headers=session)).is_success
                answers: list[httpx.Response] = []

                async def call(n: int) -> None:
                    answers.append(
                        await http.post(server.url, json=_call("list-sessions", n), headers=session)
                    )

                async with anyio.create_task_group() as calls:
                    for n in range(200):
                        calls.start_soon(call, n)
                served = [a for a in answers if a.status_code == 200]
                assert served, "the flooder's calls within its share are served"
                assert all(not a.json()["result"]["isError"] for a in served)
                throttled = [a for a in answers if a.status_code != 200]
                assert throttled
                for response in throttled:
                    _assert_refused(response, "requests in flight")

                # Closing a session gives its place back.
                closed = await http.delete(server.url, headers=session)
                assert closed.is_success
                assert (await http.post(server.url, json=INITIALIZE)).status_code == 200
                _assert_refused(await http.post(server.url, json=INITIALIZE), "sessions")
                done.set()
            assert bob_calls, "bob was served throughout the flood"


async def test_requests_past_the_rate_get_429_with_retry_after(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = {"FIML_HTTP_REQUESTS_PER_MINUTE_PER_USER": "30"}
    flooder = {**ACCEPT, "Authorization": f"Bearer {tokens['flooder']}"}
    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=True, env=env) as server,
            httpx.AsyncClient(timeout=60, headers=flooder) as http,
        ):
            statuses = []
            for n in range(40):
                response = await http.post(server.url, json=_call("list-sessions", n))
                statuses.append(response.status_code)
                if response.status_code == 429:
                    _assert_refused(response, "requests per minute")
            # A burst of a minute's worth, then (at half a request a second) refusals.
            assert statuses.count(200) in range(30, 33)
            assert statuses.count(429) == 40 - statuses.count(200)
            async with http_client(server.url, tokens["bob"]) as bob:
                for _ in range(5):
                    await ok(bob, "list-sessions")
            anonymous = await http.post(
                server.url, json=_call("list-sessions", 0), headers={"Authorization": ""}
            )
            assert anonymous.status_code == 401


def test_a_user_s_session_cap_is_at_most_a_tenth_of_the_shared_one() -> None:
    assert Settings(http_sessions_per_user=1000, http_max_sessions=10_000)
    with pytest.raises(ValidationError, match="http_sessions_per_user"):
        Settings(http_sessions_per_user=1001, http_max_sessions=10_000)
    for field in ("http_in_flight_per_user", "http_requests_per_minute_per_user"):
        with pytest.raises(ValidationError, match=field):
            Settings.model_validate({field: 0})
