"""``fiml dashboard``: a real process on the embedded SQLite default, for the local user
only, with no token and nothing secret in its URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.requests import Request

from fiml.cli.failures import EXIT_BAD_INPUT
from fiml.dashboard.local import LoopbackPeers, bind_loopback
from fiml.sessions.store import SessionStore
from tests.cli.conftest import assert_one_line_error, invoke
from tests.mcp.live_servers import server_env

STARTUP_SECONDS = 60


def request_from(peer: tuple[str, int], host: str) -> Request:
    """A request as uvicorn hands it over: the peer's address, and the Host header."""
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/dashboard",
            "headers": [(b"host", host.encode())],
            "client": peer,
            "server": ("127.0.0.1", 0),
        }
    )


def test_the_kernel_names_the_owner_of_a_loopback_connection() -> None:
    listener = bind_loopback()
    port = int(listener.getsockname()[1])
    peers = LoopbackPeers(port)
    if not peers.tables_exist():
        pytest.skip("no /proc/net/tcp: not Linux")
    with listener, socket.create_connection(("127.0.0.1", port)) as client:
        client_port = int(client.getsockname()[1])
        assert peers.owner(client_port) == os.getuid()
        assert peers(request_from(("127.0.0.1", client_port), f"127.0.0.1:{port}"))
        # Another user's process would own its socket: refused.
        other = LoopbackPeers(port, uid=os.getuid() + 1)
        assert not other(request_from(("127.0.0.1", client_port), f"127.0.0.1:{port}"))
        # A page whose DNS name points at 127.0.0.1 sends its own name as Host: refused.
        assert not peers(request_from(("127.0.0.1", client_port), f"evil.example:{port}"))
    assert peers.owner(client_port) is None  # closed: no longer listed


def test_a_connection_the_table_does_not_list_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "tcp"
    empty.write_text("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when\n")
    peers = LoopbackPeers(8000, tables=(empty,))
    assert not peers(request_from(("127.0.0.1", 50000), "127.0.0.1:8000"))
    assert not peers(request_from(("10.0.0.2", 50000), "127.0.0.1:8000"))


async def test_fiml_dashboard_serves_the_local_user_without_a_token(
    tmp_path: Path, seeded_store: SessionStore
) -> None:
    # webbrowser runs $BROWSER with the URL: here a script that writes it down.
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env = server_env(tmp_path, FIML_USER="dana", BROWSER=f"{sys.executable} {browser} %s")
    command = [sys.executable, "-m", "fiml.cli", "dashboard"]
    process = await anyio.open_process(
        command, env=env, cwd=str(tmp_path), stderr=subprocess.DEVNULL
    )
    async with process:
        try:
            assert process.stdout is not None
            with anyio.fail_after(STARTUP_SECONDS):
                url = (await process.stdout.receive()).decode().strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard")
            assert "?" not in url  # nothing secret in the link
            async with httpx.AsyncClient(timeout=30) as http:
                for _ in range(100):  # the URL is printed just before uvicorn starts
                    try:
                        page = await http.get(url)
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.1)
                assert page.status_code == 200 and "dana" in page.text
                assert 'data-figure="stats.archived_sessions" data-value="7"' in page.text
                data = await http.get(f"{url}/data.json?days=7")
                assert data.json()["stats"]["archived_sessions"] == 6
                rebound = await http.get(url, headers={"Host": "evil.example"})
                assert rebound.status_code == 403
                assert "Log out" not in page.text  # no login, so no logout
            with anyio.fail_after(STARTUP_SECONDS):  # the browser runs on its own
                while not opened.exists() or not opened.read_text():
                    await anyio.sleep(0.05)
            assert opened.read_text() == url
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()


def test_a_port_in_use_is_one_line_and_no_browser_opens() -> None:
    with bind_loopback() as busy:
        port = str(busy.getsockname()[1])
        result = invoke("dashboard", "--port", port, "--no-browser")
    assert_one_line_error(result, EXIT_BAD_INPUT, f"127.0.0.1:{port}", "in use", "--port")
    assert result.stdout == ""  # no URL printed for a server that never listened
