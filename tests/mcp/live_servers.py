"""Real server processes for the transport tests: ``python -m fiml.mcp`` over stdio and HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import httpx2
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from fiml.mcp import TokenFile
from tests.conftest import sqlite_url
from tests.mcp.conftest import ok

READY_LINE = b"Uvicorn running on"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
"""A raw JSON-RPC ``initialize`` body, for tests that speak HTTP without the SDK's client."""
ACCEPT = {"Accept": "application/json, text/event-stream"}
"""What a streamable HTTP client must accept."""
STARTUP_SECONDS = 60


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process: the test's SQLite file and offline quotes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env.update(
        FIML_DATABASE_URL=sqlite_url(tmp_path),
        FIML_MARKET_PROVIDER="offline",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def stdio_server(tmp_path: Path, user: str) -> StdioServerParameters:
    """How the SDK's stdio client starts ``python -m fiml.mcp`` as ``user``."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "fiml.mcp"],
        env=server_env(tmp_path, FIML_USER=user),
        cwd=str(tmp_path),
    )


def write_tokens(path: Path, **users: str) -> dict[str, str]:
    """A token file for ``user=role`` pairs; returns each user's token."""
    tokens = TokenFile([])
    issued = {
        user: tokens.add_token(user, "admin" if role == "admin" else "user")
        for user, role in users.items()
    }
    tokens.save(path)
    return issued


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _drain(process: Process, ready: anyio.Event, log: bytearray) -> None:
    assert process.stdout is not None
    async for chunk in process.stdout:
        log.extend(chunk)
        if READY_LINE in log:
            ready.set()


@dataclass
class RunningServer:
    """A server process: where it listens, and what it has logged so far."""

    url: str
    log: bytearray


@asynccontextmanager
async def http_server(
    tmp_path: Path,
    tokens_file: Path,
    *,
    stateless: bool = False,
    access_log: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[RunningServer]:
    """Run ``python -m fiml.mcp --http`` on a free port until the block ends (``env``: more
    variables for the server)."""
    port = free_port()
    command = [sys.executable, "-m", "fiml.mcp", "--http", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--tokens", str(tokens_file)]
    if stateless:
        command.append("--stateless")
    if access_log:
        command.append("--access-log")
    log = bytearray()
    process = await anyio.open_process(
        command,
        env=server_env(tmp_path, **(env or {})),
        cwd=str(tmp_path),
        stderr=subprocess.STDOUT,
    )
    async with process, anyio.create_task_group() as tasks:
        ready = anyio.Event()
        tasks.start_soon(_drain, process, ready, log)
        try:
            with anyio.fail_after(STARTUP_SECONDS):
                await ready.wait()
            yield RunningServer(f"http://127.0.0.1:{port}/mcp", log)
        finally:
            process.terminate()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await process.wait()
            tasks.cancel_scope.cancel()


@asynccontextmanager
async def http_client(
    url: str,
    token: str | None,
    *,
    statuses: list[int] | None = None,
    mode: str = "auto",
    on_message: MessageHandlerFnT | None = None,
) -> AsyncIterator[Client]:
    """The SDK's streamable HTTP client, sending ``token`` as a bearer token.

    The status of every HTTP response is appended to ``statuses`` when given; ``mode`` and
    ``on_message`` are the client's (``"legacy"``: the 2025 handshake; the handler of the
    server's notifications).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async with (
        httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(30, read=60),
            event_hooks={"response": [record]},
        ) as http,
        Client(
            streamable_http_client(url, http_client=http), mode=mode, message_handler=on_message
        ) as client,
    ):
        yield client


async def run_workflow(client: Client) -> str:
    """create -> three tracked searches -> info shows them -> list -> extend -> close."""
    created = await ok(
        client,
        "create-analysis-session",
        assets=["AAPL", "GOOGL", "BTC"],
        session_type="comparative",
        ttl_hours=4,
    )
    sid = str(created["session_id"])
    await ok(client, "update-session-context", session_id=sid, context={"goal": "compare"})
    await ok(client, "search-by-symbol", symbol="AAPL", session_id=sid)
    await ok(client, "search-by-symbol", symbol="GOOGL", session_id=sid)
    third = await ok(client, "search-by-coin", symbol="BTC", session_id=sid, context="recent")
    assert third["session"]["total_queries"] == 3
    assert [q["parameters"]["symbol"] for q in third["session"]["recent_queries"]] == [
        "AAPL",
        "GOOGL",
        "BTC",
    ]

    info = await ok(client, "get-session-info", session_id=sid, recent_queries=3)
    assert info["stats"]["total_queries"] == 3
    assert info["stats"]["query_types"] == {"search_by_symbol": 2, "search_by_coin": 1}
    assert [q["result_summary"].split(":")[0] for q in info["recent_queries"]] == [
        "AAPL",
        "GOOGL",
        "BTC",
    ]
    assert info["context"] == {"goal": "compare"}
    assert info["session"]["assets"] == ["AAPL", "GOOGL", "BTC"]

    listed = await ok(client, "list-sessions")
    assert [s["session_id"] for s in listed["sessions"]] == [sid]
    assert listed["sessions"][0]["total_queries"] == 3

    extended = await ok(client, "extend-session", session_id=sid, hours=2)
    old_expiry = datetime.fromisoformat(str(created["expires_at"]))
    assert datetime.fromisoformat(str(extended["expires_at"])) - old_expiry == timedelta(hours=2)

    closed = await ok(client, "close-analysis-session", session_id=sid)
    assert closed["status"] == "closed"
    return sid
