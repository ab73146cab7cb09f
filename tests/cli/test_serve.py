"""``fiml serve``: the MCP server over stdio and HTTP, as real processes, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from mcp import Client, StdioServerParameters

from fiml.core.config import Settings
from fiml.mcp import TokenFile
from fiml.sessions.store import SessionStore
from tests.cli.conftest import assert_one_line_error, invoke
from tests.conftest import sqlite_url
from tests.mcp.conftest import ok
from tests.mcp.live_servers import READY_LINE, free_port, http_client, run_workflow, server_env

TIMEOUT = 90


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The server's environment without FIML_MARKET_PROVIDER: ``--offline`` must do it."""
    env = server_env(tmp_path, **extra)
    del env["FIML_MARKET_PROVIDER"]
    return env


async def _owner(tmp_path: Path, session_id: str) -> str | None:
    async with SessionStore(Settings(database_url=sqlite_url(tmp_path))) as store:
        session = await store.get_session(session_id, history_limit=0)
    assert session is not None
    return session.user_id


async def test_serve_over_stdio(tmp_path: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "fiml.cli", "serve", "--offline"],
        env=_env(tmp_path, FIML_USER="analyst_001"),
        cwd=str(tmp_path),
    )
    with anyio.fail_after(TIMEOUT):
        async with Client(server) as client:
            sid = await run_workflow(client)
            found = await ok(client, "search-by-symbol", symbol="AAPL")

    assert found["quote"]["synthetic"] is True
    assert await _owner(tmp_path, sid) == "analyst_001"


async def _wait_until_ready(process: Process, log: bytearray, ready: anyio.Event) -> None:
    assert process.stdout is not None
    async for chunk in process.stdout:
        log.extend(chunk)
        if READY_LINE in log:
            ready.set()


@asynccontextmanager
async def _http_server(tmp_path: Path, tokens: Path) -> AsyncIterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "fiml.cli", "serve", "--http", "--stateless", "--offline"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--tokens", str(tokens)]
    process = await anyio.open_process(
        command, env=_env(tmp_path), cwd=str(tmp_path), stderr=subprocess.STDOUT
    )
    log = bytearray()
    async with process, anyio.create_task_group() as tasks:
        ready = anyio.Event()
        tasks.start_soon(_wait_until_ready, process, log, ready)
        try:
            with anyio.fail_after(TIMEOUT):
                await ready.wait()
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await process.wait()
            tasks.cancel_scope.cancel()


async def test_serve_over_http_with_a_token_from_fiml_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    token = invoke("tokens", "add", "alice", "--tokens", str(tokens)).stdout.strip()

    with anyio.fail_after(TIMEOUT):
        async with _http_server(tmp_path, tokens) as url, http_client(url, token) as client:
            created = await ok(
                client, "create-analysis-session", assets=["AAPL"], session_type="equity"
            )
            listed = await ok(client, "list-sessions")

    sid = str(created["session_id"])
    assert [s["session_id"] for s in listed["sessions"]] == [sid]
    assert await _owner(tmp_path, sid) == "alice"


def test_http_without_a_token_file_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIML_MCP_TOKENS_FILE", raising=False)

    assert_one_line_error(invoke("serve", "--http"), 2, "the HTTP transport needs a token file")


def test_http_with_an_empty_token_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    TokenFile([]).save(path)

    assert_one_line_error(invoke("serve", "--http", "--tokens", str(path)), 2, "holds no tokens")
