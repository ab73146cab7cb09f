"""Database faults as storage errors naming the dialect, for every SQL statement FIML runs.

A database that cannot be reached, times out, has no free connection or fails a read is a
:class:`~fiml.core.errors.StorageUnavailableError`; a full disk or a read-only database is
a :class:`~fiml.core.errors.StorageRefusedError`; every other database error (a constraint
violated, bad SQL: a bug) passes unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from fiml.core.errors import StorageRefusedError, StorageUnavailableError
from fiml.sessions.db import TOO_MANY_CONNECTIONS

__all__ = ["unavailable_as_error"]

# Faults of a database that is up but will not take the write: retrying cannot help.
_REFUSED = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_READONLY": "the database file is read-only",
    "53100": "the disk is full",
    "25006": "the database is read-only (a read-only transaction, or a standby)",
}
# Faults that may clear on their own (a lock released, a disk remounted, a slot freed).
_UNAVAILABLE = {
    "SQLITE_BUSY": "the write lock was held past FIML_DATABASE_TIMEOUT_SECONDS",
    "SQLITE_LOCKED": "the write lock was held past FIML_DATABASE_TIMEOUT_SECONDS",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_IOERR": "the disk failed a read or a write",
    TOO_MANY_CONNECTIONS: "every connection slot was taken (too many clients) for "
    "FIML_DATABASE_TIMEOUT_SECONDS; see FIML_DATABASE_POOL_SIZE and FIML_DATABASE_MAX_OVERFLOW",
}
_NO_FREE_CONNECTION = (
    "no free connection in the pool within FIML_DATABASE_TIMEOUT_SECONDS "
    "(FIML_DATABASE_POOL_SIZE + FIML_DATABASE_MAX_OVERFLOW connections, all busy)"
)


def _fault_code(error: BaseException | None) -> str | None:
    """SQLite's primary result code name (``SQLITE_IOERR`` for ``SQLITE_IOERR_WRITE``), or
    PostgreSQL's SQLSTATE."""
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        return "_".join(name.split("_", 2)[:2])
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


@contextmanager
def unavailable_as_error(backend: str) -> Iterator[None]:
    """Database faults become storage errors naming ``backend``; other database errors
    (constraint violations, bad SQL: bugs) pass unchanged.

    StorageUnavailableError: unreachable, dropped connection, timed out, no free pooled
    connection, no free server slot, SQLite's lock held too long, a file that cannot be
    opened, an I/O error. StorageRefusedError: a full disk, a read-only database.
    """
    try:
        yield
    except DBAPIError as exc:
        code = _fault_code(exc.orig)
        detail = str(exc.orig) or type(exc.orig).__name__
        if code in _REFUSED:
            raise StorageRefusedError(backend, f"{_REFUSED[code]} ({detail})") from exc
        if code in _UNAVAILABLE:
            raise StorageUnavailableError(backend, f"{_UNAVAILABLE[code]} ({detail})") from exc
        if exc.connection_invalidated:
            raise StorageUnavailableError(backend, detail) from exc
        raise
    except PoolTimeoutError as exc:  # every pooled connection stayed checked out
        raise StorageUnavailableError(backend, _NO_FREE_CONNECTION) from exc
    except TimeoutError as exc:  # a statement or a connection attempt past the timeout
        raise StorageUnavailableError(
            backend, "no reply within FIML_DATABASE_TIMEOUT_SECONDS"
        ) from exc
    except OSError as exc:  # refused or reset while connecting
        raise StorageUnavailableError(backend, str(exc) or type(exc).__name__) from exc
