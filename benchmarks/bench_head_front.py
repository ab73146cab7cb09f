"""What the head deadline's front (fiml/mcp/head_deadline.py) costs a request.

    python benchmarks/bench_head_front.py

Pairs of processes run side by side, one with uvicorn alone on its port
(``FIML_HTTP_HEADER_TIMEOUT_SECONDS=0``), one behind the front (the default, 10 s): first
the echo floor (benchmarks/http_floor.py, a minimal JSON-RPC endpoint: the front's own cost,
little else to blur it), then ``python -m fiml.mcp --http --stateless`` (offline quotes, a
SQLite file each). One client, speaking raw HTTP/1.1 on sockets so that its own cost stays
small, times blocks in ABBA order (a busy machine slows both alike):

- *echo floor*: the tool call below, echoed, on one connection;
- *kept alive*: ``GET /healthz`` one after the other on one connection;
- *a connection each*: the same, each on a new connection (connect, request, close);
- *tool call*: ``tools/call list-sessions`` (JSON-RPC, bearer token) on one connection.

Figures: median wall time per request (µs) and the server process's CPU per request
(/proc/PID/task/*/schedstat, Linux), each with its ratio to uvicorn alone. Results replace the
``head-front-overhead`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from harness import table, write_section

from fiml.mcp import TokenFile

BLOCK = 300
ROUNDS = 16
READY_LINE = b"Uvicorn running on"
FLOOR_SCRIPT = Path(__file__).with_name("http_floor.py")
CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "list-sessions", "arguments": {}},
    }
).encode()


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        # schedstat's first field: nanoseconds on a CPU, finer than stat's 10 ms ticks; one
        # file a thread (the event loop's, SQLite's), all living through the run.
        tasks = Path(f"/proc/{self.pid}/task").glob("*/schedstat")
        return sum(int(task.read_text().split()[0]) for task in tasks) / 1e9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _server(
    name: str, workdir: Path, arguments: list[str], env: dict[str, str]
) -> AsyncIterator[Server]:
    """``python ARGUMENTS --host 127.0.0.1 --port P``, until uvicorn says it runs."""
    port = _free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *arguments,
            *("--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with asyncio.timeout(60):
            while READY_LINE not in log.read_bytes():
                if process.returncode is not None:
                    raise RuntimeError(log.read_text())
                await asyncio.sleep(0.1)
        yield Server(name, port, process.pid)
    finally:
        process.terminate()
        await process.wait()


def _fiml(
    name: str, workdir: Path, header_timeout: str
) -> contextlib.AbstractAsyncContextManager[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env.update(
        FIML_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / (name + '.db')}",
        FIML_MARKET_PROVIDER="offline",
        FIML_HTTP_HEADER_TIMEOUT_SECONDS=header_timeout,
        FIML_HTTP_REQUESTS_PER_MINUTE_PER_USER="100000000",
        PYTHONUNBUFFERED="1",
    )
    arguments = [
        "-m",
        "fiml.mcp",
        "--http",
        "--stateless",
        "--tokens",
        str(workdir / "tokens.json"),
    ]
    return _server(name, workdir, arguments, env)


def _echo(
    name: str, workdir: Path, header_timeout: str
) -> contextlib.AbstractAsyncContextManager[Server]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    arguments = [str(FLOOR_SCRIPT), "--header-timeout", header_timeout]
    return _server(name, workdir, arguments, env)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(head + body)
    return body


Scenario = Callable[[Server, str], Awaitable[None]]


async def kept_alive(server: Server, token: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    for _ in range(BLOCK):
        writer.write(request)
        await _answer(reader)
    writer.close()


async def a_connection_each(server: Server, token: str) -> None:
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n"
    ).encode()
    for _ in range(BLOCK):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        await _answer(reader)
        writer.close()
        await writer.wait_closed()


async def tool_call(server: Server, token: str) -> None:
    """A tool call on one connection (to the echo floor: the same request, echoed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\n"
        f"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: {len(CALL)}\r\n\r\n"
    ).encode() + CALL
    for _ in range(BLOCK):
        writer.write(request)
        body = await _answer(reader)
        if b'"isError":true' in body.replace(b" ", b""):
            raise RuntimeError(body)
    writer.close()


async def _block(scenario: Scenario, server: Server, token: str) -> tuple[float, float]:
    cpu = server.cpu_seconds()
    started = time.perf_counter()
    await scenario(server, token)
    wall = (time.perf_counter() - started) / BLOCK * 1e6
    return wall, (server.cpu_seconds() - cpu) / BLOCK * 1e6


async def _compare(
    label: str, scenario: Scenario, alone: Server, front: Server, token: str
) -> list[str]:
    samples: dict[Server, list[tuple[float, float]]] = {alone: [], front: []}
    for server in (alone, front):
        await _block(scenario, server, token)  # warm up
    for round_ in range(ROUNDS):
        # ABBA: neither server always runs right after the other.
        for server in (alone, front) if round_ % 2 else (front, alone):
            samples[server].append(await _block(scenario, server, token))
    wall = {s: statistics.median(w for w, _ in v) for s, v in samples.items()}
    cpu = {s: statistics.median(c for _, c in v) for s, v in samples.items()}
    return [
        label,
        f"{wall[alone]:.0f}",
        f"{wall[front]:.0f}",
        f"{wall[front] - wall[alone]:+.0f}",
        f"{wall[front] / wall[alone]:.2f}",
        f"{cpu[alone]:.0f}",
        f"{cpu[front]:.0f}",
        f"{cpu[front] - cpu[alone]:+.0f}",
        f"{cpu[front] / cpu[alone]:.2f}",
    ]


async def main() -> None:
    fiml_scenarios: dict[str, Scenario] = {
        "kept alive (GET /healthz)": kept_alive,
        "a connection each (GET /healthz)": a_connection_each,
        "tool call list-sessions, kept alive": tool_call,
    }
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        tokens_file = TokenFile([])
        token = tokens_file.add_token("alice", "user")
        tokens_file.save(workdir / "tokens.json")
        async with (
            _echo("echo-alone", workdir, "0") as alone,
            _echo("echo-front", workdir, "10") as front,
        ):
            rows.append(
                await _compare("echo floor: POST kept alive", tool_call, alone, front, token)
            )
        async with (
            _fiml("alone", workdir, "0") as alone,
            _fiml("front", workdir, "10") as front,
        ):
            for label, scenario in fiml_scenarios.items():
                rows.append(await _compare(label, scenario, alone, front, token))
    body = (
        "Pairs of processes side by side, uvicorn alone on the port "
        "(`FIML_HTTP_HEADER_TIMEOUT_SECONDS=0`) and behind the head deadline's front (the "
        "default): the echo floor (benchmarks/http_floor.py), then `fiml serve --http "
        f"--stateless`; one raw HTTP/1.1 client, median of {ROUNDS} blocks in ABBA order of "
        f"{BLOCK} sequential requests per server. Wall µs is the client's time per request; "
        "server CPU is the server process's time on a CPU per request "
        "(/proc/PID/task/*/schedstat, all threads). Ratios are to uvicorn alone in the same "
        "run.\n\n"
        + table(
            rows,
            [
                "scenario",
                "alone µs",
                "front µs",
                "added µs",
                "ratio",
                "alone CPU µs",
                "front CPU µs",
                "added CPU µs",
                "CPU ratio",
            ],
        )
    )
    write_section("head-front-overhead", "Head deadline front overhead per request", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
