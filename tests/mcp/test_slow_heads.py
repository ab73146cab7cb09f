"""Slow request heads cut off on a real ``python -m fiml.mcp --http`` (the front of
``fiml/mcp/head_deadline.py``): heads past FIML_HTTP_HEADER_TIMEOUT_SECONDS, bodies past the
body deadline, connections past the cap, while a normal client is served; and what the front
passes on to uvicorn is the request the client sent."""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from tests.mcp.conftest import ok
from tests.mcp.live_servers import (
    INITIALIZE,
    RunningServer,
    http_client,
    http_server,
    server_env,
    write_tokens,
)

HEADER_SECONDS = 2
SLOW_HEADS = 300
SLOW_BODIES = 20
SLACK = 8
"""How long past the deadline every slow socket may take to be closed, on a busy machine."""


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return write_tokens(tmp_path / "tokens.json", slow="user", alice="user")


def _port(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


async def _read_until_closed(stream: SocketStream) -> bytes:
    reply = b""
    try:
        while True:
            reply += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        return reply


async def _dribbling(
    port: int, first: bytes, then: Callable[[], bytes], answers: list[bytes]
) -> None:
    """Send ``first``, then ``then()`` a byte a second, until the server closes; the
    connection's answer is appended to ``answers`` once it is closed."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream, anyio.create_task_group() as g:

        async def dribble() -> None:
            try:
                await stream.send(first)
                while True:
                    await stream.send(then())
                    await anyio.sleep(1)
            except (anyio.BrokenResourceError, ConnectionError):
                return  # the server closed the connection, as it should

        g.start_soon(dribble)
        answers.append(await _read_until_closed(stream))
        g.cancel_scope.cancel()


def _body_head(port: int, token: str) -> bytes:
    return (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()


async def _served_meanwhile(
    url: str, token: str, done: Callable[[], bool], work: Callable[[], Coroutine[None, None, None]]
) -> int:
    """Run ``work`` beside a normal client calling a tool every 0.1 s until ``done()``;
    every one of its calls must succeed. How many it made."""
    served = 0
    async with http_client(url, token) as alice, anyio.create_task_group() as group:
        group.start_soon(work)
        while not done():
            await ok(alice, "list-sessions")
            served += 1
            await anyio.sleep(0.1)  # within the requests-per-minute share
    return served


async def test_slow_heads_and_bodies_are_closed_at_the_deadline_while_others_are_served(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = {"FIML_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_SECONDS)}
    env["FIML_HTTP_BODY_TIMEOUT_SECONDS"] = str(HEADER_SECONDS)
    heads: list[bytes] = []
    bodies: list[bytes] = []
    with anyio.fail_after(120):
        async with http_server(tmp_path, tmp_path / "tokens.json", env=env) as server:
            port = _port(server)
            head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()

            async def slow_clients() -> None:
                with anyio.move_on_after(HEADER_SECONDS + SLACK):
                    async with anyio.create_task_group() as slow:
                        for _ in range(SLOW_HEADS):
                            slow.start_soon(_dribbling, port, head, lambda: b"a", heads)
                        for _ in range(SLOW_BODIES):
                            body_head = _body_head(port, tokens["slow"])
                            slow.start_soon(_dribbling, port, body_head, lambda: b" ", bodies)
                finished.set()

            finished = anyio.Event()
            served = await _served_meanwhile(
                server.url, tokens["alice"], finished.is_set, slow_clients
            )
    assert len(heads) == SLOW_HEADS, "every slow head's connection was closed in time"
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in heads)
    assert len(bodies) == SLOW_BODIES, "every slow body's connection was closed in time"
    # Past the body deadline 408; past the slow user's in-flight share 429 at once.
    assert {answer.split(b" ", 2)[1] for answer in bodies} <= {b"408", b"429"}
    assert served > 0, "the normal client was served meanwhile"


async def test_a_later_head_that_stalls_closes_its_kept_alive_connection(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    # uvicorn's keep-alive timeout is far away: only the head deadline can close it.
    env = {"FIML_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_SECONDS)}
    env["FIML_HTTP_KEEP_ALIVE_SECONDS"] = "120"
    answers: list[bytes] = []
    with anyio.fail_after(60):
        async with http_server(tmp_path, tmp_path / "tokens.json", env=env) as server:
            port = _port(server)
            first = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nGET /he".encode()
            with anyio.move_on_after(HEADER_SECONDS + SLACK):
                await _dribbling(port, first, lambda: b"a", answers)
    assert len(answers) == 1, "the stalled connection was closed"
    assert answers[0].count(b"HTTP/1.1 ") == 1, "the first request answered, the stalled one not"
    assert answers[0].startswith(b"HTTP/1.1 200 ")


async def test_connections_past_the_cap_get_503_and_a_freed_place_serves_again(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = {"FIML_HTTP_MAX_CONNECTIONS": "20", "FIML_HTTP_HEADER_TIMEOUT_SECONDS": "60"}
    with anyio.fail_after(60):
        async with http_server(tmp_path, tmp_path / "tokens.json", env=env) as server:
            port = _port(server)
            request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            held = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(20)]
            for stream in held:
                await stream.send(b"GET /")  # a head begun, not finished: the place is held
            async with await anyio.connect_tcp("127.0.0.1", port) as one_more:
                refused = await _read_until_closed(one_more)
            for stream in held:
                await stream.aclose()
            answer = b""
            while not answer.startswith(b"HTTP/1.1 200 "):
                # The front counts a place free once it has read the client's close.
                async with await anyio.connect_tcp("127.0.0.1", port) as again:
                    await again.send(request)
                    answer = await again.receive()
                await anyio.sleep(0.05)
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"connection: close" in refused.lower()


async def test_a_header_timeout_of_0_leaves_heads_untimed(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = {"FIML_HTTP_HEADER_TIMEOUT_SECONDS": "0"}
    with anyio.fail_after(60):
        async with http_server(tmp_path, tmp_path / "tokens.json", env=env) as server:
            port = _port(server)
            head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                # Twice the deadline the other tests use, a byte at a time, then the rest.
                for byte in head[:8]:
                    await stream.send(bytes([byte]))
                    await anyio.sleep(HEADER_SECONDS / 4)
                await stream.send(head[8:])
                answer = await stream.receive()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert f"Uvicorn running on http://127.0.0.1:{port}".encode() in server.log


async def _exchange(port: int, data: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        return await _read_until_closed(stream)


async def test_the_front_passes_requests_on_as_sent_and_refuses_ambiguous_ones(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    with anyio.fail_after(60):
        async with http_server(tmp_path, tmp_path / "tokens.json", access_log=True) as server:
            port = _port(server)
            host = f"Host: 127.0.0.1:{port}\r\n"
            get = f"GET /healthz HTTP/1.1\r\n{host}".encode()
            body = json.dumps(INITIALIZE).encode()
            post = (
                f"POST /mcp HTTP/1.1\r\n{host}Authorization: Bearer {tokens['alice']}\r\n"
                "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            ).encode()
            # Three requests in one write (pipelined), one with a body, the last closing.
            kept = await _exchange(
                port,
                get
                + b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\r\n"
                + post
                + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                + get
                + b"Connection: close\r\n\r\n",
            )
            chunked = await _exchange(
                port,
                post
                + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
            )
            smuggled = await _exchange(
                port,
                get + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )
            two_lengths = await _exchange(
                port, get + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            )
            folded = await _exchange(port, get + b"X-A: 1\r\n  folded\r\n\r\n")
            huge = await _exchange(port, get + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert kept.count(b"HTTP/1.1 200 ") == 3
    assert chunked.startswith(b"HTTP/1.1 200 "), "a chunked request is answered"
    assert b"connection: close" in chunked.lower(), "and its connection ends after it"
    assert smuggled.startswith(b"HTTP/1.1 400 ")
    assert two_lengths.startswith(b"HTTP/1.1 400 ")
    assert folded.startswith(b"HTTP/1.1 400 ")
    assert huge.startswith(b"HTTP/1.1 431 ")
    # The access log names the client's own address, never the one it claimed.
    assert server.log.count(b"127.0.0.1:") >= 4
    assert server.log.count(b'"GET /healthz HTTP/1.1" 200') == 2
    assert b"6.6.6.6" not in server.log
    # Stopped by SIGTERM, the server leaves no directory of its private socket behind.
    socket_path = re.search(rb"unix socket (\S+)", server.log)
    assert socket_path is not None
    assert not Path(socket_path.group(1).decode()).parent.exists()


async def test_a_port_in_use_is_a_one_line_error(tmp_path: Path, tokens: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "fiml.mcp", "--http", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--tokens", str(tmp_path / "tokens.json")]
        with anyio.fail_after(60):
            result = await anyio.run_process(
                command, env=server_env(tmp_path), cwd=str(tmp_path), check=False
            )
    assert result.returncode == 2
    errors = [line for line in result.stderr.decode().splitlines() if "error" in line.lower()]
    assert any(f"cannot listen on 127.0.0.1:{port}" in line for line in errors), errors
