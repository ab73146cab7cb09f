"""``fiml dashboard``: the dashboard for the local user, on a loopback port, without tokens.

No token, and no secret link either (a URL ends up in shell history, browser history and
other users' ``ps``): the server listens on 127.0.0.1 only, on a free port, and lets in a
connection only when

- its ``Host`` header names that loopback address (so a web page that rebinds its own DNS
  name to 127.0.0.1 cannot read the dashboard through the visitor's browser), and
- on Linux, the connecting socket belongs to the user running the dashboard: the kernel's
  table of TCP sockets (``/proc/net/tcp``) names the owner of the client end. Elsewhere
  that table does not exist, and any local user's connection is let in; the docs say so.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request

from fiml.core.errors import ConfigurationError
from fiml.dashboard.app import PATH, LocalViewer, dashboard_routes
from fiml.sessions.analytics import SessionAnalytics

__all__ = ["LoopbackPeers", "bind_loopback", "local_app", "serve_local"]

_SOCKET_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def _port_of(address: str) -> int:
    """The port of a ``/proc/net/tcp`` address (``HEXIP:HEXPORT``)."""
    return int(address.rpartition(":")[2], 16)


class LoopbackPeers:
    """Lets in loopback connections of one OS user (:attr:`uid`) to one port."""

    def __init__(
        self, port: int, *, uid: int | None = None, tables: tuple[Path, ...] = _SOCKET_TABLES
    ) -> None:
        self.port = port
        self.uid = os.getuid() if uid is None else uid
        self.tables = tables
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}

    def owner(self, client_port: int) -> int | None:
        """The uid owning the client end of a connection from ``client_port`` to our port,
        or None when the kernel's socket table does not list it."""
        for table in self.tables:
            try:
                lines = table.read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 8:
                    continue
                local, remote, uid = fields[1], fields[2], fields[7]
                if _port_of(local) == client_port and _port_of(remote) == self.port:
                    return int(uid)
        return None

    def tables_exist(self) -> bool:
        """Whether this system has the socket tables (Linux)."""
        return any(table.exists() for table in self.tables)

    def __call__(self, request: Request) -> bool:
        if request.headers.get("host") not in self.hosts or request.client is None:
            return False
        if request.client.host not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            return False
        if not self.tables_exist():
            return True
        return self.owner(request.client.port) == self.uid


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: a free one the system picks); a port
    that cannot be had is a ConfigurationError saying so."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; "
            "pick another --port, or leave it out for a free one"
        ) from None
    return sock


def local_app(
    analytics: SessionAnalytics, user_id: str, allow: Callable[[Request], bool]
) -> Starlette:
    """The dashboard's routes for ``user_id``, letting in the requests ``allow`` accepts."""
    return Starlette(routes=dashboard_routes(analytics, LocalViewer(user_id, allow)))


async def serve_local(
    analytics: SessionAnalytics,
    user_id: str,
    *,
    port: int = 0,
    ready: Callable[[str], None],
) -> None:
    """Serve the local dashboard until cancelled; ``ready`` gets its URL once it listens."""
    import uvicorn

    sock = bind_loopback(port)
    bound = int(sock.getsockname()[1])
    app = local_app(analytics, user_id, LoopbackPeers(bound))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    ready(f"http://127.0.0.1:{bound}{PATH}")
    with sock:
        await uvicorn.Server(config).serve(sockets=[sock])
