"""Session ids and session types as callers may spell them, parsed or refused by name."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fiml.core.errors import InvalidSessionIdError, InvalidSessionTypeError
from fiml.sessions.models import SessionType

__all__ = ["parse_session_id", "parse_session_type"]


def parse_session_id(value: Any) -> UUID:
    """A session id as a UUID; anything that is not a UUID is an InvalidSessionIdError."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.strip())
        except ValueError:
            pass
    raise InvalidSessionIdError(value)


def parse_session_type(value: Any) -> SessionType:
    """A SessionType from an enum member or its string value."""
    if isinstance(value, SessionType):
        return value
    if isinstance(value, str):
        try:
            return SessionType(value.strip().lower())
        except ValueError:
            pass
    raise InvalidSessionTypeError(value, [t.value for t in SessionType])
