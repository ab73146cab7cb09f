"""The MCP tools' typed arguments.

Each is an ``Annotated`` type whose JSON schema tells clients what is allowed (a UUID, one
of the session types, 1-50 assets) while the values are validated by the store, so a bad
value gets FIML's own error message naming the field. Every argument is declared through
:func:`argument`, which makes its JSON type strict: a boolean is never taken for a number,
nor a string for a number or a boolean, so what a tool accepts is what its input schema
says (pydantic's lax mode would read ``true`` as 1 hour and ``"yes"`` as true).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from fiml.core.errors import InvalidSessionTypeError
from fiml.sessions.models import MAX_ASSETS, MAX_TAGS, SessionType
from fiml.sessions.store import MAX_PAGE

__all__ = [
    "AssetsArg",
    "CreateAssetsArg",
    "CreateSessionTypeArg",
    "CursorArg",
    "DaysArg",
    "HoursArg",
    "IncludeArchivedArg",
    "OffsetArg",
    "OptionalSessionIdArg",
    "OptionalSessionTypeArg",
    "PageLimitArg",
    "RemoveKeysArg",
    "RequestIdArg",
    "SessionIdArg",
    "SessionTypeArg",
    "StateArg",
    "TagsArg",
    "TemplateArg",
    "TtlArg",
    "advertised_session_type",
    "argument",
]

_SESSION_TYPES = [t.value for t in SessionType]


def argument(description: str, *, schema: dict[str, Any] | None = None) -> Any:
    """A tool argument's field: its description, what its JSON schema adds (``schema``), and
    strict JSON types."""
    return Field(description=description, strict=True, json_schema_extra=schema)


def advertised_session_type(value: str) -> str:
    """``value`` if it is a session type exactly as the schemas list it; otherwise the
    store's own InvalidSessionTypeError. The store reads types case-insensitively (a Python
    caller's ``"Equity"``); a tool takes what its schema lists, so a client that checks its
    arguments against the schema is never surprised."""
    if value not in _SESSION_TYPES:
        raise InvalidSessionTypeError(value, _SESSION_TYPES)
    return value


SessionIdArg = Annotated[
    str,
    argument(
        "The session's id, as create-analysis-session returned it.",
        schema={"format": "uuid"},
    ),
]
OptionalSessionIdArg = Annotated[
    str | None,
    argument(
        "Track this query in the session with this id (optional); the result then "
        "carries the session's context.",
        schema={"format": "uuid"},
    ),
]
RequestIdArg = Annotated[
    str | None,
    argument(
        "With a session_id: your own id for this call (1-128 printable "
        "characters). Sent again with the same session_id, e.g. a retry after a timeout, "
        "the query is recorded once; the repeat is answered with repeated=true.",
    ),
]
SessionTypeArg = Annotated[
    str,
    argument("What kind of analysis this is.", schema={"enum": _SESSION_TYPES}),
]
OptionalSessionTypeArg = Annotated[
    str | None,
    argument("Only sessions of this type.", schema={"enum": [*_SESSION_TYPES, None]}),
]
AssetsArg = Annotated[
    list[str],
    argument(
        f"The symbols under study (1-{MAX_ASSETS}), e.g. ['AAPL', 'MSFT'].",
        schema={"minItems": 1, "maxItems": MAX_ASSETS},
    ),
]
CreateAssetsArg = Annotated[
    list[str] | None,
    argument(
        f"The symbols under study (1-{MAX_ASSETS}), e.g. ['AAPL', 'MSFT']; required unless "
        "a template gives them.",
        schema={"minItems": 1, "maxItems": MAX_ASSETS},
    ),
]
CreateSessionTypeArg = Annotated[
    str | None,
    argument(
        "What kind of analysis this is; required unless a template gives it.",
        schema={"enum": [*_SESSION_TYPES, None]},
    ),
]
TemplateArg = Annotated[
    str | None,
    argument(
        "Start from your template of this name (save-session-template): its assets, type, "
        "tags, TTL and preferences, each overridden by the arguments given here."
    ),
]
TagsArg = Annotated[
    list[str] | None,
    argument(f"Labels for finding the session later (at most {MAX_TAGS})."),
]
TtlArg = Annotated[
    float | None,
    argument(
        "Hours until the session expires (fractions allowed); defaults to the "
        "server's session_default_ttl_hours and may not exceed session_max_ttl_hours."
    ),
]
HoursArg = Annotated[
    float,
    argument(
        "How many hours to push the expiry back; the new expiry may not be "
        "further than session_max_ttl_hours from now.",
        schema={"exclusiveMinimum": 0},
    ),
]
CursorArg = Annotated[
    str | None,
    argument("next_cursor from the previous page; omit for the first page."),
]
PageLimitArg = Annotated[
    int,
    argument(
        f"Page size (1-{MAX_PAGE}).",
        schema={"minimum": 1, "maximum": MAX_PAGE},
    ),
]
OffsetArg = Annotated[
    int,
    argument("How many of the oldest queries to skip.", schema={"minimum": 0}),
]
StateArg = Annotated[
    dict[str, Any] | None,
    argument("Keys to set, each to any JSON value (at most 64 KiB each)."),
]
RemoveKeysArg = Annotated[
    list[str] | None,
    argument("Context keys to remove."),
]
IncludeArchivedArg = Annotated[
    bool, argument("Also list sessions that have been archived (read-only).")
]
DaysArg = Annotated[
    float,
    argument(
        "Only sessions created in the last this many days.",
        schema={"exclusiveMinimum": 0},
    ),
]
