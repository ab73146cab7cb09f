"""Services a fault test may break: a private redis-server, and a TCP proxy to cut.

The shared Redis and PostgreSQL are used by everyone's tests at once, so a test never stops
them. To take Redis away it starts its own ``redis-server`` on a free port and kills it;
to take PostgreSQL away it talks to the shared server through a :class:`TcpProxy` and cuts
the proxy. Both need only loopback and are torn down by the test that started them.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as redis

from tests.conftest import IN_CI

START_SECONDS = 20


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_tool(name: str) -> str:
    """The path of an executable; skip (locally) or fail (under CI) when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed"
    if IN_CI:
        pytest.fail(f"{message}; CI must provide it")
    pytest.skip(message)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, seconds: float, interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not await condition():
            await asyncio.sleep(interval)


class PrivateRedis:
    """A ``redis-server`` of this test's own, on a free port, to kill and start again.

    ``appendonly=True`` runs it with an append-only file fsynced on every write, so a
    killed server comes back with every write it acknowledged; ``extra_args`` are passed
    on to ``redis-server`` (``--rename-command CONFIG ""``, say).
    """

    def __init__(
        self, directory: Path, *, appendonly: bool = False, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = require_tool("redis-server")
        self.directory = directory
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> PrivateRedis:
        await self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.kill()

    async def start(self) -> None:
        """Start the server and wait until it answers PING."""
        persistence = ["--appendonly", "no"]
        if self.appendonly:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *persistence,
            *("--daemonize", "no", "--dir", str(self.directory)),
            *("--logfile", str(self.directory / "redis.log")),
            *self.extra_args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_until(self.answers, seconds=START_SECONDS, interval=0.05)

    async def answers(self) -> bool:
        """True when the server answers PING."""
        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(await client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed or closed politely)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            await self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its connections open but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class TcpProxy:
    """A loopback TCP proxy in front of a server, to cut and restore, or to slow down.

    :meth:`cut` aborts every open connection and stops listening, so new connections are
    refused, as if the server had gone away; :meth:`restore` listens again on the same
    port. ``delay`` seconds are added before each chunk is passed on, in both directions.
    While ``stalled`` (a network black hole), connections stay open and new ones are
    accepted, but nothing is passed on in either direction.
    """

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = free_port()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def in_front_of(cls, url: str, *, delay: float = 0.0) -> TcpProxy:
        """A proxy for the host and port of a database URL."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, delay=delay)

    @property
    def stalled(self) -> bool:
        """True while nothing is passed on (set it to stall or to let traffic flow again)."""
        return not self._flowing.is_set()

    @stalled.setter
    def stalled(self, value: bool) -> None:
        if value:
            self._flowing.clear()
        else:
            self._flowing.set()

    def url_through(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.cut()

    async def restore(self) -> None:
        """Listen (again) and pass connections on to the target."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Abort every connection and refuse new ones until :meth:`restore`."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        # A connection accepted while stalled waits for traffic to flow; :meth:`cut` cancels
        # the wait along with the pipes.
        accepting = asyncio.current_task()
        if accepting is not None:
            self._tasks.add(accepting)
            accepting.add_done_callback(self._tasks.discard)
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()
