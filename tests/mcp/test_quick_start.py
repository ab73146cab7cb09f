"""``fiml serve`` over stdio answers ``initialize`` before the rest of the server starts:
the server module imports none of what the tools use, and every request but the handshake
waits for the start (:mod:`fiml.mcp.start_gate`). benchmarks/bench_startup.py times it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer

import fiml
from fiml.core.errors import ConfigurationError
from fiml.mcp.start_gate import StartGate, serve_while_starting

SOURCE = Path(fiml.__file__).resolve().parent.parent
WHAT_THE_TOOLS_USE = (
    "fiml.mcp.toolset",
    "fiml.mcp.session_tools",
    "fiml.mcp.search_tools",
    "fiml.mcp.analytics_tool",
    "fiml.mcp.resources",
    "fiml.sessions.store",
    "fiml.market.service",
    "fiml.dashboard",
    "fiml.mcp.oauth",
    "sqlalchemy",
    "redis",
    "httpx",
)


def test_the_server_module_imports_none_of_what_the_tools_use() -> None:
    code = (
        "import json, sys, fiml.mcp.server\n"
        f"print(json.dumps([m for m in {list(WHAT_THE_TOOLS_USE)!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []


def echo(text: str) -> str:
    """Say it back."""
    return text


class Spy:
    """Middleware outside the gate that sees when a method's request has reached the server."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.arrived = anyio.Event()

    async def __call__(
        self, ctx: ServerRequestContext[object, object], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method == self.method:
            self.arrived.set()
        return await call_next(ctx)


async def test_a_request_sent_during_the_start_waits_for_it_and_sees_its_tools() -> None:
    """The start registers its tool only once tools/list has reached the server: without
    the gate the list would be answered, empty, first."""
    gate, spy = StartGate(), Spy("tools/list")
    server = MCPServer("gated", middleware=[spy, gate])
    gate_at_handshake: list[bool] = []
    listed: list[str] = []

    @asynccontextmanager
    async def start() -> AsyncIterator[None]:
        await spy.arrived.wait()
        server.add_tool(echo, name="echo")
        yield

    async def serve() -> None:
        async with Client(server) as client:
            gate_at_handshake.append(gate.is_open)
            listed.extend(tool.name for tool in (await client.list_tools()).tools)

    await serve_while_starting(serve, start, gate)
    assert gate_at_handshake == [False]  # initialize was answered before the start ended
    assert listed == ["echo"]


async def test_a_start_that_fails_ends_serving_and_its_error_is_raised() -> None:
    gate, spy = StartGate(), Spy("tools/list")
    server = MCPServer("gated", middleware=[spy, gate])

    @asynccontextmanager
    async def start() -> AsyncIterator[None]:
        await spy.arrived.wait()
        raise ConfigurationError("the store cannot open")
        yield  # pragma: no cover - never reached

    async def serve() -> None:
        async with Client(server) as client:
            await client.list_tools()  # held by the gate, then cancelled with serving

    with pytest.raises(ConfigurationError, match="cannot open"):
        await serve_while_starting(serve, start, gate)
    assert not gate.is_open


async def test_a_client_gone_before_the_start_ended_still_sees_it_run_and_report() -> None:
    """A broken configuration is reported even when the client only initialized."""
    gate = StartGate()
    steps: list[str] = []
    served = anyio.Event()

    @asynccontextmanager
    async def start() -> AsyncIterator[None]:
        await served.wait()
        steps.append("started")
        yield
        steps.append("closed")

    async def serve() -> None:
        served.set()

    await serve_while_starting(serve, start, gate)
    assert steps == ["started", "closed"]

    @asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        await served.wait()
        raise ConfigurationError("bad settings")
        yield  # pragma: no cover - never reached

    with pytest.raises(ConfigurationError, match="bad settings"):
        await serve_while_starting(serve, broken, StartGate())


async def test_a_serving_failure_is_raised_after_the_start_is_closed() -> None:
    gate = StartGate()
    steps: list[str] = []

    @asynccontextmanager
    async def start() -> AsyncIterator[None]:
        yield
        steps.append("closed")

    async def serve() -> None:
        await anyio.sleep(0)
        raise OSError("stdin broke")

    with pytest.raises(OSError, match="stdin broke"):
        await serve_while_starting(serve, start, gate)
    assert steps == ["closed"]
