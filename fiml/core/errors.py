"""Every error FIML raises on purpose.

Each error carries its data as attributes and builds its own message, so callers
(the MCP layer, the CLI) can show the message as is and programs can branch on the
class or the attributes::

    FimlError
    ├── ConfigurationError
    │   ├── MissingDependencyError        (also an ImportError)
    │   └── SchemaRevisionError           .database, .current, .head
    │       ├── SchemaOutdatedError       (behind, or no schema: run `fiml db upgrade`)
    │       └── SchemaNewerError          (migrated by a newer FIML)
    ├── InvalidInputError                 .field, .value
    │   ├── InvalidSessionIdError
    │   ├── InvalidSessionTypeError
    │   ├── InvalidTTLError               .minimum, .maximum
    │   ├── ContextValueError
    │   └── InvalidCursorError
    ├── SessionError                      .session_id
    │   ├── SessionNotFoundError
    │   ├── SessionNotWritableError
    │   │   ├── SessionExpiredError
    │   │   ├── SessionClosedError
    │   │   └── SessionArchivedError
    │   ├── SessionConflictError          .expected_version, .actual_version
    │   └── QueryLimitExceededError       .limit
    ├── AuthError
    │   ├── AuthenticationError
    │   └── PermissionDeniedError
    ├── StorageError                      .backend, .reason
    │   ├── StorageUnavailableError       (unreachable, timed out, no free connection)
    │   ├── StorageRefusedError           (disk full, read-only file, a value it cannot hold)
    │   └── CorruptRecordError            .session_id (a stored record cannot be decoded)
    └── MarketDataError
        ├── SymbolNotFoundError           .symbol, .provider
        └── ProviderUnavailableError      .provider, .reason
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

__all__ = [
    "AuthError",
    "AuthenticationError",
    "ConfigurationError",
    "ContextValueError",
    "CorruptRecordError",
    "FimlError",
    "InvalidCursorError",
    "InvalidInputError",
    "InvalidSessionIdError",
    "InvalidSessionTypeError",
    "InvalidTTLError",
    "MarketDataError",
    "MissingDependencyError",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "QueryLimitExceededError",
    "RequestIdReusedError",
    "SchemaNewerError",
    "SchemaOutdatedError",
    "SchemaRevisionError",
    "SessionArchivedError",
    "SessionClosedError",
    "SessionConflictError",
    "SessionError",
    "SessionExpiredError",
    "SessionNotFoundError",
    "SessionNotWritableError",
    "StorageError",
    "StorageRefusedError",
    "StorageUnavailableError",
    "SymbolNotFoundError",
]

_MAX_SHOWN_VALUE = 80


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        # repr itself fails on ints past Python's digit limit and on very deep nesting.
        text = f"<{type(value).__name__}>"
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[: _MAX_SHOWN_VALUE - 3] + "..."
    return text


class FimlError(Exception):
    """Root of every error FIML raises on purpose."""


class ConfigurationError(FimlError):
    """The settings cannot work as given (a bad URL, an unsupported scheme, ...)."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional backend is configured but its driver is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"the {package!r} package is required for this backend; "
            f"install it with: pip install 'fiml-sessions[{extra}]'"
        )


class SchemaRevisionError(ConfigurationError):
    """The session database is not at the schema revision this FIML was built for; nothing
    was changed. ``current`` is the database's revision (None: it holds no FIML schema),
    ``head`` the newest one this FIML ships, ``database`` the URL (password hidden)."""

    def __init__(self, database: str, current: str | None, head: str, message: str) -> None:
        self.database = database
        self.current = current
        self.head = head
        super().__init__(message)


class SchemaOutdatedError(SchemaRevisionError):
    """The database's schema is older than this FIML's, or absent: migrate it on purpose
    with ``fiml db upgrade``."""

    def __init__(self, database: str, current: str | None, head: str) -> None:
        found = "holds no FIML schema" if current is None else f"is at schema revision {current}"
        super().__init__(
            database,
            current,
            head,
            f"the session database {database} {found}, this FIML needs revision {head}: "
            "migrate it with `fiml db upgrade`",
        )


class SchemaNewerError(SchemaRevisionError):
    """The database was migrated past this FIML's newest revision (by a newer FIML)."""

    def __init__(self, database: str, current: str, head: str) -> None:
        super().__init__(
            database,
            current,
            head,
            f"the session database {database} is at schema revision {current}, which this "
            f"FIML (newest revision {head}) does not know: a newer FIML migrated it; "
            "upgrade FIML to use it",
        )


class InvalidInputError(FimlError, ValueError):
    """An argument is malformed or out of range; nothing was changed."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field} {_show(value)}: {reason}")


class InvalidSessionIdError(InvalidInputError):
    """A session id is not a UUID."""

    def __init__(self, value: Any) -> None:
        super().__init__("session_id", value, "not a valid UUID")


class InvalidSessionTypeError(InvalidInputError):
    """A session type is not one of :class:`fiml.sessions.models.SessionType`."""

    def __init__(self, value: Any, allowed: list[str]) -> None:
        self.allowed = allowed
        super().__init__("session_type", value, f"must be one of {', '.join(allowed)}")


class InvalidTTLError(InvalidInputError):
    """A TTL or an extension is not positive or goes past the configured maximum."""

    def __init__(self, field: str, value: Any, *, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum
        super().__init__(
            field, value, f"must be greater than {minimum:g} and at most {maximum:g} hours"
        )


class ContextValueError(InvalidInputError):
    """A context, preference or intermediate value cannot be stored (not JSON, too large)."""


class InvalidCursorError(InvalidInputError):
    """A pagination cursor was not produced by this server."""

    def __init__(self, value: Any) -> None:
        super().__init__("cursor", value, "not a cursor returned by a previous page")


class RequestIdReusedError(InvalidInputError):
    """A request id already names another call (another tool or other arguments) in the
    session: a request id makes one call safe to retry, it never stands for a second one."""

    def __init__(self, value: str) -> None:
        super().__init__(
            "request_id",
            value,
            "already names another call in this session (another tool or other arguments); "
            "give each new call a new request_id",
        )


class SessionError(FimlError):
    """An operation on one session failed; ``session_id`` names it."""

    def __init__(self, session_id: UUID | str, message: str) -> None:
        self.session_id = str(session_id)
        super().__init__(message)


class SessionNotFoundError(SessionError, LookupError):
    """No session with this id exists (or it is not the caller's)."""

    def __init__(self, session_id: UUID | str) -> None:
        super().__init__(session_id, f"session {session_id} not found")


class SessionNotWritableError(SessionError):
    """The session exists but no longer accepts writes."""


class SessionExpiredError(SessionNotWritableError):
    """The session is past its TTL; it stays readable until it is archived."""

    def __init__(self, session_id: UUID | str) -> None:
        super().__init__(session_id, f"session {session_id} has expired and is read-only")


class SessionClosedError(SessionNotWritableError):
    """The session was closed by its user; it stays readable until it is archived."""

    def __init__(self, session_id: UUID | str) -> None:
        super().__init__(session_id, f"session {session_id} is closed and is read-only")


class SessionArchivedError(SessionNotWritableError):
    """The session is archived; archives are read-only."""

    def __init__(self, session_id: UUID | str) -> None:
        super().__init__(session_id, f"session {session_id} is archived and is read-only")


class SessionConflictError(SessionError):
    """A strict update was based on an older version of the session."""

    def __init__(self, session_id: UUID | str, *, expected_version: int, actual_version: int):
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            session_id,
            f"session {session_id} changed since it was read "
            f"(expected version {expected_version}, found {actual_version})",
        )


class QueryLimitExceededError(SessionError):
    """Tracking the query would take the session past its query limit."""

    def __init__(self, session_id: UUID | str, *, limit: int) -> None:
        self.limit = limit
        super().__init__(
            session_id, f"session {session_id} has reached its limit of {limit} queries"
        )


class AuthError(FimlError):
    """The caller could not be identified or may not do this."""


class AuthenticationError(AuthError):
    """No valid credentials were presented."""


class PermissionDeniedError(AuthError):
    """The caller is known but lacks the role this operation needs."""

    def __init__(self, action: str, role: str) -> None:
        self.action = action
        self.role = role
        super().__init__(f"{action} requires the {role!r} role")


class StorageError(FimlError):
    """A storage service (Redis, PostgreSQL, SQLite file) failed the call; ``backend`` names
    it and ``reason`` says why. Whatever the subclass, the call changed nothing."""

    def __init__(self, backend: str, reason: str, message: str | None = None) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(message or f"{backend} failed: {reason}")


class StorageUnavailableError(StorageError):
    """A storage service cannot be reached, did not answer in time, or had no free
    connection within the timeout; the same call may succeed later."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(backend, reason, f"{backend} is unavailable: {reason}")


class StorageRefusedError(StorageError):
    """A storage service is up but refused the write: its disk is full, its file is
    read-only, or it cannot hold a value; retrying the same call will not help."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(backend, reason, f"{backend} refused the write: {reason}")


class CorruptRecordError(StorageError):
    """A stored record cannot be decoded (damaged outside FIML, or by a bug); only the
    session it belongs to (``session_id``, None for an index entry) is affected."""

    def __init__(self, backend: str, session_id: UUID | str | None, reason: str) -> None:
        self.session_id = None if session_id is None else str(session_id)
        what = "an index entry" if session_id is None else f"session {session_id}"
        super().__init__(backend, reason, f"{backend} holds a corrupt record of {what}: {reason}")


class MarketDataError(FimlError):
    """A market-data lookup failed."""


class SymbolNotFoundError(MarketDataError, LookupError):
    """The provider does not know this symbol."""

    def __init__(self, symbol: str, provider: str) -> None:
        self.symbol = symbol
        self.provider = provider
        super().__init__(f"symbol {symbol!r} not found by {provider}")


class ProviderUnavailableError(MarketDataError):
    """The provider could not be reached or answered with something unusable."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"market-data provider {provider} is unavailable: {reason}")
