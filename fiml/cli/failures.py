"""Turning any failure of a command into one line on stderr and an exit code.

Exit codes:

- ``1`` the operation failed (unknown session, session not writable, schema incomplete, ...);
- ``2`` bad input or configuration (a malformed id, a bad setting, a missing token file);
- ``3`` a storage service (Redis, PostgreSQL, the SQLite file) cannot be reached;
- ``130`` interrupted (Ctrl-C).

An unreachable service is named with its URL (password hidden). ``fiml --debug`` shows
the traceback instead.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import typer

from fiml.core.errors import (
    AuthError,
    ConfigurationError,
    FimlError,
    InvalidInputError,
    StorageUnavailableError,
)

if TYPE_CHECKING:
    from pydantic import ValidationError

    from fiml.core.config import Settings

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_UNAVAILABLE",
    "Failure",
    "FailureReport",
    "describe_failure",
    "fail",
    "one_line",
    "reported_failures",
    "show_tracebacks",
    "shown_database",
    "shown_redis",
    "unavailable",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

show_tracebacks: ContextVar[bool] = ContextVar("fiml_cli_show_tracebacks", default=False)
"""Set by ``fiml --debug`` for the command it runs: failures then raise with a traceback."""

_MAX_MESSAGE_CHARS = 400
_DATABASE_MODULES = (
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "alembic",
    "fiml.sessions.db",
    "fiml.sessions.schema",
    "fiml.sessions.backends.sql",
)
_REDIS_MODULES = (
    "redis",
    "fiml.core.redis_client",
    "fiml.sessions.backends.redis",
    "fiml.market.cache",
    "fiml.sessions.joblock",
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What to tell the user about a failure, and the exit code."""

    message: str
    exit_code: int


def one_line(text: str) -> str:
    """``text`` on one line, whitespace collapsed, cut to a readable length."""
    flat = " ".join(text.split())
    if len(flat) > _MAX_MESSAGE_CHARS:
        flat = flat[: _MAX_MESSAGE_CHARS - 3] + "..."
    return flat


def shown_database(settings: Settings | None) -> str:
    """The session database, named for people: ``PostgreSQL at <url>`` or ``SQLite file <path>``."""
    if settings is None:
        return "the session database"
    from sqlalchemy.engine import make_url  # settings are loaded: the command uses storage
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return "the session database"
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database or ':memory:'}"
    return f"PostgreSQL at {url.render_as_string(hide_password=True)}"


def shown_redis(settings: Settings | None) -> str:
    """Redis, named for people with its URL (password hidden) when one is configured."""
    if settings is None or not settings.redis_url:
        return "Redis"
    parts = urlsplit(settings.redis_url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@{netloc.rsplit('@', 1)[1]}"
    return f"Redis at {urlunsplit(parts._replace(netloc=netloc))}"


def unavailable(service: str, reason: object) -> Failure:
    """The failure for a service that cannot be reached."""
    return Failure(f"{service} is unavailable: {reason}", EXIT_UNAVAILABLE)


def _redis_error_types() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the redis extra is not installed, so nothing can raise its errors
        return ()
    return (RedisError,)


def _service_in_traceback(exc: BaseException, settings: Settings | None) -> str | None:
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith(_REDIS_MODULES):
            return shown_redis(settings)
        if module.startswith(_DATABASE_MODULES):
            return shown_database(settings)
    return None


def _settings_failure(exc: ValidationError) -> Failure:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        reason = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"FIML_{field.upper()}: {reason}")
    return Failure("invalid setting " + "; ".join(problems), EXIT_BAD_INPUT)


def _single(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def describe_failure(exc: BaseException, settings: Settings | None) -> Failure | None:
    """The one-line failure for ``exc``, or None if it is not an expected kind of failure."""
    exc = _single(exc)
    if isinstance(exc, StorageUnavailableError):
        backend = exc.backend.lower()
        service = shown_redis(settings) if "redis" in backend else shown_database(settings)
        return unavailable(service, exc.reason)
    if isinstance(exc, InvalidInputError | ConfigurationError | AuthError):
        return Failure(str(exc), EXIT_BAD_INPUT)
    if isinstance(exc, FimlError):
        return Failure(str(exc), EXIT_FAILED)
    # The libraries' error types are imported on a failure, once our own kinds are ruled
    # out, so that no command loads SQLAlchemy only to be able to name its errors.
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return _settings_failure(exc)
    redis_errors = _redis_error_types()
    if redis_errors and isinstance(exc, redis_errors):
        return unavailable(shown_redis(settings), exc)
    if isinstance(exc, DBAPIError):
        reason = exc.orig if exc.orig is not None else exc
        return unavailable(shown_database(settings), str(reason).strip().split("\n")[0])
    if isinstance(exc, PoolTimeoutError):
        return unavailable(shown_database(settings), "no free connection in the pool")
    if isinstance(exc, OSError):
        named = _service_in_traceback(exc, settings)
        return Failure(str(exc), EXIT_FAILED) if named is None else unavailable(named, exc)
    return None


@dataclass
class FailureReport:
    """What :func:`reported_failures` knows when it describes a failure."""

    settings: Settings | None = None


def fail(message: str, exit_code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``error: <message>`` on stderr; returns the Exit to raise with ``exit_code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(exit_code)


@contextmanager
def reported_failures() -> Iterator[FailureReport]:
    """Turn any failure in the block into one line on stderr and a non-zero exit.

    Set ``settings`` on the yielded report once they are loaded, so that an unreachable
    service is named with its URL.
    """
    report = FailureReport()
    try:
        yield report
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    except Exception as exc:
        if show_tracebacks.get():
            raise
        failure = describe_failure(exc, report.settings)
        if failure is None:
            failure = Failure(
                f"unexpected {type(exc).__name__}: {exc} (run `fiml --debug ...` for details)",
                EXIT_FAILED,
            )
        raise fail(failure.message, failure.exit_code) from None
