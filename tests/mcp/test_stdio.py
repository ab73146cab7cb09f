"""A real ``python -m fiml.mcp`` over stdio, driven by the SDK's stdio client."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

from fiml.core.config import Settings
from fiml.sessions.store import SessionStore
from tests.conftest import sqlite_url
from tests.mcp.conftest import fails, ok
from tests.mcp.live_servers import run_workflow, stdio_server

TIMEOUT = 90


async def test_the_whole_workflow_over_stdio(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with Client(stdio_server(tmp_path, "analyst_001")) as client:
            sid = await run_workflow(client)

    async with SessionStore(Settings(database_url=sqlite_url(tmp_path))) as store:
        session = await store.get_session(sid)
    assert session is not None
    assert session.user_id == "analyst_001"
    assert session.is_closed
    assert session.state.history.total_queries == 3


async def test_the_stdio_caller_is_fiml_user(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with Client(stdio_server(tmp_path, "alice")) as alice:
            sid = str(
                (
                    await ok(
                        alice, "create-analysis-session", assets=["AAPL"], session_type="equity"
                    )
                )["session_id"]
            )
        async with Client(stdio_server(tmp_path, "bob")) as bob:
            message = await fails(bob, "get-session-info", session_id=sid)
            listed = await ok(bob, "list-sessions")

    assert message.endswith(f"session {sid} not found")
    assert listed["sessions"] == []
