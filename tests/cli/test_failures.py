"""Failures are one line on stderr and a non-zero exit: bad settings, unreachable services."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fiml.sessions.store import SessionStore
from tests.cli.conftest import UNKNOWN_ID, assert_one_line_error, invoke

DEAD_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
DEAD_REDIS = "redis://127.0.0.1:1/0"

# Every command that touches the session store, with the arguments it needs.
STORE_COMMANDS = [
    ["sessions", "list", "--user", "alice"],
    ["sessions", "show", UNKNOWN_ID],
    ["sessions", "extend", UNKNOWN_ID],
    ["sessions", "close", UNKNOWN_ID],
    ["sessions", "archive", UNKNOWN_ID],
    ["sessions", "archive", "--user", "alice"],
    ["sessions", "delete", UNKNOWN_ID],
    ["sessions", "delete", UNKNOWN_ID, "--yes"],
    ["analytics", "stats"],
    ["analytics", "user", "alice"],
    ["analytics", "export"],
    ["cleanup"],
    ["demo"],
]
DB_COMMANDS = [["db", "create"], ["db", "upgrade"], ["db", "verify"], ["db", "drop", "--yes"]]


def _name(args: list[str]) -> str:
    return " ".join("ID" if a == UNKNOWN_ID else a for a in args)


@pytest.mark.parametrize("args", STORE_COMMANDS + DB_COMMANDS, ids=_name)
def test_unreachable_postgres_is_named_in_one_line(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIML_DATABASE_URL", DEAD_POSTGRES)

    result = invoke(*args)

    assert_one_line_error(result, 3, f"PostgreSQL at {DEAD_POSTGRES} is unavailable")


@pytest.mark.parametrize("args", STORE_COMMANDS, ids=_name)
def test_unreachable_redis_is_named_in_one_line(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIML_REDIS_URL", DEAD_REDIS)

    result = invoke(*args)

    assert_one_line_error(result, 3, f"Redis at {DEAD_REDIS} is unavailable")


def test_passwords_in_service_urls_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIML_DATABASE_URL", "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/x")
    postgres = invoke("sessions", "list", "--user", "alice")
    monkeypatch.delenv("FIML_DATABASE_URL")
    monkeypatch.setenv("FIML_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    redis = invoke("sessions", "list", "--user", "alice")

    assert_one_line_error(postgres, 3, "postgres:***@127.0.0.1:1/x")
    assert_one_line_error(redis, 3, "redis://:***@127.0.0.1:1/0")
    assert "hunter2" not in postgres.output + redis.output


# aiosqlite stops its worker thread after a failed connect without awaiting it; the thread
# then reports to the event loop the command has already closed (harmless, pytest notices).
# Waiting for the thread here keeps that report inside this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_sqlite_file_that_cannot_be_opened_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIML_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}")  # a directory

    result = invoke("sessions", "list", "--user", "alice")
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            thread.join(timeout=10)

    assert_one_line_error(result, 3, f"SQLite file {tmp_path} is unavailable")


def test_a_sqlite_file_under_a_regular_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plain").write_text("not a directory", encoding="utf-8")
    path = tmp_path / "plain" / "sessions.db"
    monkeypatch.setenv("FIML_DATABASE_URL", f"sqlite+aiosqlite:///{path}")

    result = invoke("db", "verify")

    assert_one_line_error(result, 3, f"SQLite file {path} is unavailable")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("FIML_DATABASE_URL", "mysql://db/x", "FIML_DATABASE_URL: database_url must be a sqlite"),
        ("FIML_SESSION_MAX_TTL_HOURS", "-1", "FIML_SESSION_MAX_TTL_HOURS: Input should be greater"),
        ("FIML_MARKET_PROVIDER", "psychic", "FIML_MARKET_PROVIDER"),
        ("FIML_REDIS_KEY_PREFIX", "fiml{x}", "FIML_REDIS_KEY_PREFIX: String should match"),
        ("FIML_REDIS_KEY_PREFIX", "", "FIML_REDIS_KEY_PREFIX: String should have at least 1"),
        (
            "FIML_HTTP_HEADER_TIMEOUT_SECONDS",
            "-1",
            "FIML_HTTP_HEADER_TIMEOUT_SECONDS: Input should be greater than or equal to 0",
        ),
        ("FIML_HTTP_HEADER_TIMEOUT_SECONDS", "nan", "FIML_HTTP_HEADER_TIMEOUT_SECONDS: Input"),
        ("FIML_HTTP_HEADER_TIMEOUT_SECONDS", "soon", "FIML_HTTP_HEADER_TIMEOUT_SECONDS: Input"),
        ("FIML_HTTP_MAX_CONNECTIONS", "0", "FIML_HTTP_MAX_CONNECTIONS: Input should be greater"),
        ("FIML_HTTP_BODY_TIMEOUT_SECONDS", "0", "FIML_HTTP_BODY_TIMEOUT_SECONDS: Input should be"),
    ],
)
def test_bad_settings_are_one_line(
    variable: str, value: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)

    result = invoke("sessions", "list", "--user", "alice")

    assert_one_line_error(result, 2, "invalid setting", fragment)


def test_a_bug_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("something no one expected")

    monkeypatch.setattr(SessionStore, "list_user_sessions_page", broken)

    result = invoke("sessions", "list", "--user", "alice")

    assert_one_line_error(
        result, 1, "unexpected RuntimeError: something no one expected", "fiml --debug"
    )


def test_debug_shows_the_traceback() -> None:
    result = invoke("--debug", "sessions", "show", "nope")

    assert result.exit_code != 0
    assert type(result.exception).__name__ == "InvalidSessionIdError"


def test_debug_is_off_for_the_next_command() -> None:
    invoke("--debug", "sessions", "show", "nope")

    assert_one_line_error(invoke("sessions", "show", "nope"), 2, "not a valid UUID")


def test_version() -> None:
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == "fiml 0.1.0"
