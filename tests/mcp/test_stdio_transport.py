"""FIML's stdio transport (:mod:`fiml.mcp.stdio`): framing, bad lines, EOF, big messages.

The first tests drive the streams over OS pipes in this process; the last ones run real
server processes, driven by the SDK's stdio client or by raw JSON-RPC lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import mcp_types as types
import pytest
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from fiml.core.errors import InvalidInputError
from fiml.mcp.stdio import (
    MessageTooLargeError,
    StdioReadStream,
    StdioTransportError,
    StdioWriteStream,
    run_stdio,
    stdio_streams,
)
from fiml.sessions.models import MAX_STATE_VALUE_BYTES
from tests.mcp.conftest import ok
from tests.mcp.live_servers import server_env, stdio_server

TIMEOUT = 90
REPO = Path(__file__).resolve().parents[2]
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'


@dataclass
class Peer:
    """The client's ends of the pipes: what it writes the transport reads, and back."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    read_transport: asyncio.ReadTransport

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> dict[str, Any]:
        raw = await self.reader.readline()
        assert raw.endswith(b"\n"), raw
        value: dict[str, Any] = json.loads(raw)
        return value

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def wired(
    max_message_bytes: int = 64 * 1024 * 1024,
) -> AsyncIterator[tuple[StdioReadStream, StdioWriteStream, Peer]]:
    """The transport over two fresh pipes, and the peer on their other ends."""
    to_server = os.pipe()
    to_peer = os.pipe()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(to_peer[0], "rb")
    )
    write_transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), os.fdopen(to_server[1], "wb")
    )
    peer = Peer(reader, asyncio.StreamWriter(write_transport, protocol, None, loop), read_transport)
    try:
        async with stdio_streams(
            stdin=to_server[0], stdout=to_peer[1], max_message_bytes=max_message_bytes
        ) as (read_stream, write_stream):
            yield read_stream, write_stream, peer
    finally:
        write_transport.close()
        read_transport.close()
        os.close(to_server[0])
        os.close(to_peer[1])


def request(message: SessionMessage | Exception) -> types.JSONRPCRequest:
    assert isinstance(message, SessionMessage), message
    assert isinstance(message.message, types.JSONRPCRequest)
    return message.message


async def test_one_message_per_line_both_ways() -> None:
    async with wired() as (read_stream, write_stream, peer):
        await peer.send(PING + b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        ping = request(await read_stream.receive())
        assert (ping.id, ping.method) == (1, "ping")
        notification = await read_stream.receive()
        assert isinstance(notification, SessionMessage)
        assert isinstance(notification.message, types.JSONRPCNotification)

        await write_stream.send(
            SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=1, result={"é": "ü"}))
        )
        assert await peer.line() == {"jsonrpc": "2.0", "id": 1, "result": {"é": "ü"}}


async def test_a_line_that_is_not_json_is_answered_and_delivered_as_its_error() -> None:
    async with wired() as (read_stream, _, peer):
        await peer.send(b"this is not json\n" + PING)
        delivered = await read_stream.receive()
        assert isinstance(delivered, ValidationError)
        assert await peer.line() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": types.PARSE_ERROR, "message": "Parse error: the line is not JSON"},
        }
        assert request(await read_stream.receive()).method == "ping"


@pytest.mark.parametrize(
    ("line", "answered_id"),
    [
        (b'{"jsonrpc":"2.0","id":7,"method":5}', 7),
        (b'{"jsonrpc":"2.0","id":"a","method":"ping","params":[1]}', "a"),
        (b'{"jsonrpc":"1.0","id":8,"method":"ping"}', 8),
        (b'{"jsonrpc":"2.0","id":true,"method":5}', None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":5}', None),
        (b'{"jsonrpc":"2.0","method":7}', None),
        (b'{"jsonrpc":"2.0","id":3,"resolt":{}}', None),
        (b"[1, 2]", None),
        (b"42", None),
    ],
)
async def test_json_that_is_no_message_is_an_invalid_request(
    line: bytes, answered_id: object
) -> None:
    async with wired() as (read_stream, _, peer):
        await peer.send(line + b"\n" + PING)
        assert isinstance(await read_stream.receive(), ValidationError)
        answer = await peer.line()
        assert answer["id"] == answered_id
        assert answer["error"]["code"] == types.INVALID_REQUEST
        assert request(await read_stream.receive()).method == "ping"


async def test_crlf_and_a_last_line_without_newline_are_messages() -> None:
    async with wired() as (read_stream, _, peer):
        await peer.send(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\r\n')
        await peer.send(b'{"jsonrpc":"2.0","id":2,"method":"ping"}')
        peer.close()
        assert request(await read_stream.receive()).id == 1
        assert request(await read_stream.receive()).id == 2
        with pytest.raises(anyio.EndOfStream):
            await read_stream.receive()


async def test_undecodable_bytes_read_as_replacement_characters() -> None:
    async with wired() as (read_stream, _, peer):
        await peer.send(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"a\xffb"}}\n')
        assert request(await read_stream.receive()).params == {"x": "a\ufffdb"}


async def test_eof_ends_the_stream_and_iteration() -> None:
    async with wired() as (read_stream, _, peer):
        await peer.send(PING)
        peer.close()
        received = [item async for item in read_stream]
        assert [request(item).id for item in received] == [1]
        with pytest.raises(anyio.EndOfStream):
            await read_stream.receive()


async def test_a_line_over_the_limit_is_answered_skipped_and_reading_goes_on() -> None:
    async with wired(max_message_bytes=1000) as (read_stream, _, peer):
        big = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "ping", "params": {"x": "y" * 5000}})
        await peer.send(big.encode() + b"\n" + PING)
        delivered = await read_stream.receive()
        assert isinstance(delivered, MessageTooLargeError)
        answer = await peer.line()
        assert answer["id"] is None
        assert answer["error"]["code"] == types.INVALID_REQUEST
        assert "1000 bytes" in answer["error"]["message"]
        assert request(await read_stream.receive()).id == 1


async def test_megabyte_messages_cross_whole_both_ways() -> None:
    payload = "x" * (3 * 1024 * 1024)
    async with wired() as (read_stream, write_stream, peer):
        line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"p": payload}})
        sending = asyncio.ensure_future(peer.send(line.encode() + b"\n"))
        assert request(await read_stream.receive()).params == {"p": payload}
        await sending

        response = types.JSONRPCResponse(jsonrpc="2.0", id=1, result={"p": payload})
        reading = asyncio.ensure_future(peer.line())
        await write_stream.send(SessionMessage(response))
        assert (await reading)["result"] == {"p": payload}


async def test_concurrent_sends_never_interleave() -> None:
    async with wired() as (_, write_stream, peer):

        async def send(i: int) -> None:
            result = {"i": i, "fill": str(i) * 200_000}
            await write_stream.send(
                SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=i, result=result))
            )

        async def read_all() -> list[dict[str, Any]]:
            return [await peer.line() for _ in range(12)]

        reading = asyncio.ensure_future(read_all())
        async with anyio.create_task_group() as tasks:
            for i in range(12):
                tasks.start_soon(send, i)
        lines = await reading
        assert sorted(line["id"] for line in lines) == list(range(12))
        assert all(line["result"]["fill"] == str(line["id"]) * 200_000 for line in lines)


async def test_closed_streams_refuse_and_a_gone_reader_breaks_sends() -> None:
    async with wired() as (read_stream, write_stream, peer):
        await read_stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await read_stream.receive()
    async with wired() as (_, write_stream, peer):
        peer.read_transport.close()
        await asyncio.sleep(0)
        message = SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=1, result={}))
        with pytest.raises(anyio.BrokenResourceError):
            for _ in range(100):  # the first write may land before the close is seen
                await write_stream.send(message)
        await write_stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await write_stream.send(message)


async def test_a_receive_waiting_on_the_pipe_ends_when_the_stream_closes() -> None:
    async with wired() as (read_stream, _, _peer):
        waiting = asyncio.ensure_future(read_stream.receive())
        await asyncio.sleep(0)
        with pytest.raises(anyio.BusyResourceError):
            await read_stream.receive()
        await read_stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await waiting


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
async def test_the_message_limit_must_be_a_positive_integer(limit: Any) -> None:
    with pytest.raises(InvalidInputError, match="max_message_bytes"):
        async with stdio_streams(stdin=0, stdout=1, max_message_bytes=limit):
            pass


async def test_the_standard_descriptors_are_diverted_while_serving_and_restored() -> None:
    before = [os.fstat(fd) for fd in (0, 1)]
    async with stdio_streams() as _:
        null, stderr = os.fstat(0), os.fstat(2)
        assert (null.st_rdev, os.fstat(1).st_ino) == (os.stat(os.devnull).st_rdev, stderr.st_ino)
        with pytest.raises(StdioTransportError, match="descriptor 0"):
            async with stdio_streams():
                pass
    after = [os.fstat(fd) for fd in (0, 1)]
    assert [(s.st_dev, s.st_ino) for s in after] == [(s.st_dev, s.st_ino) for s in before]
    async with stdio_streams():  # free again
        pass


# --- real server processes ---------------------------------------------------------


async def test_the_sdk_stdio_client_works_against_the_server(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with Client(stdio_server(tmp_path, "alice")) as client:
            assert (await client.list_prompts()).prompts == []
            tools = {tool.name for tool in (await client.list_tools()).tools}
            sid = str(
                (
                    await ok(
                        client, "create-analysis-session", assets=["AAPL"], session_type="equity"
                    )
                )["session_id"]
            )
            info = await ok(client, "get-session-info", session_id=sid)
    assert "get-session-info" in tools
    assert info["session"]["session_id"] == sid


async def test_a_megabyte_payload_round_trips_through_the_server(tmp_path: Path) -> None:
    keys = 20  # 20 values just under the per-value limit: requests and results over 1 MB
    context = {f"k{i}": "v" * (MAX_STATE_VALUE_BYTES - 16) for i in range(keys)}
    with anyio.fail_after(TIMEOUT):
        async with Client(stdio_server(tmp_path, "alice")) as client:
            created = await ok(
                client, "create-analysis-session", assets=["AAPL"], session_type="equity"
            )
            sid = str(created["session_id"])
            updated = await ok(client, "update-session-context", session_id=sid, context=context)
            info = await ok(client, "get-session-info", session_id=sid)
    assert len(json.dumps(context)) > 1024 * 1024
    assert updated["context"] == context
    assert info["context"] == context


class RawServer:
    """``python -m fiml.mcp`` with JSON-RPC lines written and read directly."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(data)

    async def line(self) -> bytes:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            self.buffer += await self.process.stdout.receive()
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    async def message(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(await self.line())
        return value

    async def rest_of_stdout(self) -> bytes:
        assert self.process.stdout is not None
        rest = self.buffer
        try:
            async for chunk in self.process.stdout:
                rest += chunk
        except anyio.EndOfStream:
            pass
        return rest


@asynccontextmanager
async def raw_server(tmp_path: Path) -> AsyncIterator[RawServer]:
    """A server process after the initialize handshake."""
    process = await anyio.open_process(
        [sys.executable, "-m", "fiml.mcp"],
        env=server_env(tmp_path, FIML_USER="alice"),
        cwd=str(tmp_path),
        stderr=None,
    )
    async with process:
        raw = RawServer(process)
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": HANDSHAKE_PROTOCOL_VERSIONS[-1],
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        }
        await raw.send(json.dumps(initialize).encode() + b"\n")
        assert (await raw.message())["id"] == 0
        await raw.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        try:
            yield raw
        finally:
            if process.returncode is None:
                process.kill()


async def test_malformed_lines_get_json_rpc_errors_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with raw_server(tmp_path) as server:
            await server.send(b"{not json\n")
            await server.send(b'{"jsonrpc":"2.0","id":7,"method":["tools/list"]}\n')
            await server.send(b'{"jsonrpc":"2.0","id":8,"method":"ping"}\n')
            parse_error, invalid, pong = [await server.message() for _ in range(3)]
            assert parse_error["id"] is None
            assert parse_error["error"]["code"] == types.PARSE_ERROR
            assert invalid["id"] == 7
            assert invalid["error"]["code"] == types.INVALID_REQUEST
            assert pong == {"jsonrpc": "2.0", "id": 8, "result": {}}


async def test_eof_on_stdin_ends_the_server_with_exit_code_0(tmp_path: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with raw_server(tmp_path) as server:
            await server.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n')
            assert "tools" in (await server.message())["result"]
            assert server.process.stdin is not None
            await server.process.stdin.aclose()
            assert await server.process.wait() == 0
            assert await server.rest_of_stdout() == b""


async def test_stray_output_never_reaches_the_protocol_stream(tmp_path: Path) -> None:
    errlog = tmp_path / "stderr.txt"
    # Block-buffered stdout (no PYTHONUNBUFFERED): what print() left in the buffer is
    # flushed when the transport ends, into the diversion, not onto the wire.
    env = {k: v for k, v in server_env(tmp_path).items() if k != "PYTHONUNBUFFERED"}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tests.mcp.noisy_server"],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
    )
    with anyio.fail_after(TIMEOUT), errlog.open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            results = [await client.call_tool("shout", {"text": f"hello{i}"}) for i in range(3)]
            assert (await client.list_prompts()).prompts == []
    for i, result in enumerate(results):
        assert not result.is_error, result.content
        assert result.structured_content == {"result": "''"}, i  # stdin read nothing
    stderr = errlog.read_text()
    for i in range(3):
        for way in ("print", "buffered", "fd1", "child"):
            assert f"{way} hello{i}" in stderr
        assert f"child stdin hello{i} ''" in stderr  # the child read nothing either


async def test_an_sdk_without_the_low_level_server_falls_back_to_its_own_transport() -> None:
    class LaterSdkServer:  # what a future MCPServer without ``_lowlevel_server`` looks like
        served = False

        async def run_stdio_async(self) -> None:
            self.served = True

    server = LaterSdkServer()
    await run_stdio(cast(MCPServer, server))
    assert server.served
