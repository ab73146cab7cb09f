"""Token changes reach running servers without a restart; unsafe token files are refused.

The reload rules are driven with a clock of the test's own (no sleeping on the check
interval); one test edits the file under a real ``fiml serve --http`` with the real
``fiml tokens`` commands.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import pytest

from fiml.core.errors import ConfigurationError
from fiml.mcp import HashedTokenVerifier, TokenFile
from fiml.mcp.token_watch import CHECK_INTERVAL_SECONDS, WatchedTokenFile
from tests.mcp.live_servers import ACCEPT, INITIALIZE, http_server, write_tokens

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += CHECK_INTERVAL_SECONDS


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.json"


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


def watched(path: Path, ticks: Ticks) -> WatchedTokenFile:
    loaded = WatchedTokenFile.load(path)
    # The same file, on the test's clock: what load read, and when it read it.
    return WatchedTokenFile(path, loaded.current(), _stat(path), clock=ticks)


def _stat(path: Path) -> tuple[int, int, int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def users(tokens: WatchedTokenFile) -> dict[str, str]:
    return {e.user_id: e.role for e in tokens.current().entries}


def edit(path: Path, change: str, **args: str) -> str | None:
    """What ``fiml tokens`` does to the file: load, change, save atomically."""
    file = TokenFile.load(path)
    token = None
    if change == "add":
        token = file.add_token(args["user"], "admin" if args.get("role") == "admin" else "user")
    elif change == "revoke":
        file.entries = [e for e in file.entries if e.user_id != args["user"]]
    elif change == "role":  # the same token, now an admin's
        file.entries = [
            replace(e, role="admin") if e.user_id == args["user"] else e for e in file.entries
        ]
    file.save(path)
    return token


async def test_add_revoke_and_role_change_take_effect_at_the_next_check(
    path: Path, ticks: Ticks
) -> None:
    issued = write_tokens(path, alice="user", bob="user")
    tokens = watched(path, ticks)
    verifier = HashedTokenVerifier(tokens)

    carol = edit(path, "add", user="carol")
    edit(path, "revoke", user="bob")
    edit(path, "role", user="alice")
    assert users(tokens) == {"alice": "user", "bob": "user"}  # not checked yet
    ticks.advance()

    assert users(tokens) == {"alice": "admin", "carol": "user"}
    assert carol is not None and await verifier.verify_token(carol) is not None
    assert await verifier.verify_token(issued["bob"]) is None
    alice = await verifier.verify_token(issued["alice"])
    assert alice is not None and alice.claims == {"fiml_role": "admin"}


@pytest.mark.parametrize(
    "damage",
    ["not json", "empty object", "bad entry", "world writable", "unreadable", "deleted"],
)
def test_a_damaged_file_keeps_the_last_good_tokens_and_logs_once(
    path: Path, ticks: Ticks, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    issued = write_tokens(path, alice="user")
    tokens = watched(path, ticks)
    if damage == "not json":
        path.write_text("{", encoding="utf-8")
    elif damage == "empty object":
        path.write_text("{}", encoding="utf-8")
    elif damage == "bad entry":
        path.write_text('{"tokens": [{"user": "x", "sha256": "zz"}]}', encoding="utf-8")
    elif damage == "world writable":
        path.chmod(0o666)
    elif damage == "unreadable":  # a directory in its place: unreadable even to root
        path.unlink()
        path.mkdir()
    else:
        path.unlink()

    with caplog.at_level(logging.INFO, logger="fiml.mcp.token_watch"):
        for _ in range(5):
            ticks.advance()
            assert users(tokens) == {"alice": "user"}

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [getattr(r, "event", None) for r in errors] == ["tokens_reload_failed"]
    assert issued["alice"] not in caplog.text
    assert tokens.current().entries[0].sha256 not in caplog.text

    # Mended, the file is read again.
    if path.is_dir():
        path.rmdir()
    elif path.exists():
        path.chmod(0o600)
    write_tokens(path, dave="admin")
    ticks.advance()
    assert users(tokens) == {"dave": "admin"}


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_file_others_may_write_is_refused_at_start_with_the_fix(path: Path, mode: int) -> None:
    write_tokens(path, alice="user")
    path.chmod(mode)

    with pytest.raises(ConfigurationError) as refused:
        WatchedTokenFile.load(path)

    message = str(refused.value)
    assert "\n" not in message
    assert f"chmod 600 {path}" in message


def test_fiml_tokens_writes_a_private_file(path: Path) -> None:
    write_tokens(path, alice="user")

    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_a_world_writable_file_stops_the_server_at_start(tmp_path: Path, path: Path) -> None:
    write_tokens(path, alice="user")
    path.chmod(0o666)

    started = subprocess.run(
        [sys.executable, "-m", "fiml.mcp", "--http", "--port", "1", "--tokens", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert started.returncode != 0
    assert f"chmod 600 {path}" in started.stderr


async def _status(http: httpx.AsyncClient, url: str, token: str) -> int:
    headers = {**ACCEPT, "Authorization": f"Bearer {token}"}
    return (await http.post(url, json=INITIALIZE, headers=headers)).status_code


async def test_fiml_tokens_revoke_and_add_reach_a_running_server(
    tmp_path: Path, path: Path
) -> None:
    issued = write_tokens(path, alice="user", bob="user")

    def fiml_tokens(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "fiml.cli", "tokens", *args, "--tokens", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    with anyio.fail_after(120):
        async with (
            http_server(tmp_path, path, stateless=True) as server,
            httpx.AsyncClient(timeout=30) as http,
        ):
            assert await _status(http, server.url, issued["bob"]) == 200
            fiml_tokens("revoke", "bob")
            carol = httpx.Response(200, content=fiml_tokens("add", "carol")).json()["token"]

            # No restart: the server's next requests after its check interval see the file.
            while await _status(http, server.url, issued["bob"]) != 401:
                await anyio.sleep(CHECK_INTERVAL_SECONDS / 5)
            assert await _status(http, server.url, carol) == 200
            assert await _status(http, server.url, issued["alice"]) == 200
