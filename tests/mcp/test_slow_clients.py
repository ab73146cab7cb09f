"""Slow clients cut off on a real ``python -m fiml.mcp --http``: bodies past the deadline,
idle connections past the keep-alive timeout, while a normal client is served."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from tests.mcp.conftest import ok
from tests.mcp.live_servers import http_client, http_server, write_tokens

BODY_SECONDS = 2
KEEP_ALIVE_SECONDS = 2
SLOW_SOCKETS = 300
BOUND = 30
"""Generous: every slow socket must be closed by then (the deadline is BODY_SECONDS)."""


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return write_tokens(tmp_path / "tokens.json", slow="user", alice="user")


async def _read_until_closed(stream: SocketStream) -> bytes:
    reply = b""
    try:
        while True:
            reply += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        return reply


async def _byte_a_second_body(port: int, token: str, answers: list[bytes]) -> None:
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream, anyio.create_task_group() as g:

        async def dribble() -> None:
            try:
                await stream.send(head)
                for _ in range(1000):
                    await stream.send(b" ")
                    await anyio.sleep(1)
            except (anyio.BrokenResourceError, ConnectionError):
                return  # the server closed the connection, as it should

        g.start_soon(dribble)
        answers.append(await _read_until_closed(stream))
        g.cancel_scope.cancel()


async def _idle_after_a_request(port: int, answers: list[bytes]) -> None:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answers.append(await _read_until_closed(stream))


async def test_slow_bodies_and_idle_connections_are_closed_while_others_are_served(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = {
        "FIML_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_SECONDS),
        "FIML_HTTP_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE_SECONDS),
    }
    bodies: list[bytes] = []
    idle: list[bytes] = []
    served = 0
    with anyio.fail_after(120):
        async with http_server(tmp_path, tmp_path / "tokens.json", env=env) as server:
            port = int(server.url.rsplit(":", 1)[1].split("/")[0])
            async with (
                http_client(server.url, tokens["alice"]) as alice,
                anyio.create_task_group() as group,
            ):
                with anyio.move_on_after(BOUND):
                    async with anyio.create_task_group() as slow:
                        for _ in range(SLOW_SOCKETS):
                            slow.start_soon(_byte_a_second_body, port, tokens["slow"], bodies)
                        for _ in range(10):
                            slow.start_soon(_idle_after_a_request, port, idle)
                        while len(bodies) + len(idle) < SLOW_SOCKETS + 10:
                            await ok(alice, "list-sessions")
                            served += 1
                            await anyio.sleep(0.1)  # within the requests-per-minute share
                group.cancel_scope.cancel()
    assert len(bodies) == SLOW_SOCKETS, "every slow body's connection was closed"
    # Past the deadline 408; past the slow user's in-flight share 429 at once: all closed.
    statuses = [answer.split(b" ", 2)[1] for answer in bodies]
    assert set(statuses) <= {b"408", b"429"}
    assert b"408" in statuses
    assert len(idle) == 10, "every idle connection was closed after keep-alive"
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in idle)
    # Closed by the keep-alive timeout, not by the answer itself.
    assert all(b"connection: close" not in answer.lower() for answer in idle)
    assert served > 0, "the normal client was served meanwhile"
