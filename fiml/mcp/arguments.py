"""The MCP tools' typed arguments.

Each is an ``Annotated`` type whose JSON schema tells clients what is allowed (a UUID, one
of the session types, 1-50 assets) while the values are validated by the store, so a bad
value gets FIML's own error message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from fiml.sessions.models import MAX_ASSETS, MAX_TAGS, SessionType
from fiml.sessions.store import MAX_PAGE

__all__ = [
    "AssetsArg",
    "CursorArg",
    "DaysArg",
    "HoursArg",
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
    "TtlArg",
]

_SESSION_TYPES = [t.value for t in SessionType]

SessionIdArg = Annotated[
    str,
    Field(
        description="The session's id, as create-analysis-session returned it.",
        json_schema_extra={"format": "uuid"},
    ),
]
OptionalSessionIdArg = Annotated[
    str | None,
    Field(
        description="Track this query in the session with this id (optional); the result then "
        "carries the session's context.",
        json_schema_extra={"format": "uuid"},
    ),
]
RequestIdArg = Annotated[
    str | None,
    Field(
        description="With a session_id: your own id for this call (1-128 printable "
        "characters). Sent again with the same session_id, e.g. a retry after a timeout, "
        "the query is recorded once; the repeat is answered with repeated=true.",
    ),
]
SessionTypeArg = Annotated[
    str,
    Field(description="What kind of analysis this is.", json_schema_extra={"enum": _SESSION_TYPES}),
]
OptionalSessionTypeArg = Annotated[
    str | None,
    Field(description=f"Only sessions of this type: one of {', '.join(_SESSION_TYPES)}."),
]
AssetsArg = Annotated[
    list[str],
    Field(
        description=f"The symbols under study (1-{MAX_ASSETS}), e.g. ['AAPL', 'MSFT'].",
        json_schema_extra={"minItems": 1, "maxItems": MAX_ASSETS},
    ),
]
TagsArg = Annotated[
    list[str] | None,
    Field(description=f"Labels for finding the session later (at most {MAX_TAGS})."),
]
TtlArg = Annotated[
    float | None,
    Field(
        description="Hours until the session expires (fractions allowed); defaults to the "
        "server's session_default_ttl_hours and may not exceed session_max_ttl_hours."
    ),
]
HoursArg = Annotated[
    float,
    Field(
        description="How many hours to push the expiry back; the new expiry may not be "
        "further than session_max_ttl_hours from now.",
        json_schema_extra={"exclusiveMinimum": 0},
    ),
]
CursorArg = Annotated[
    str | None,
    Field(description="next_cursor from the previous page; omit for the first page."),
]
PageLimitArg = Annotated[
    int,
    Field(
        description=f"Page size (1-{MAX_PAGE}).",
        json_schema_extra={"minimum": 1, "maximum": MAX_PAGE},
    ),
]
OffsetArg = Annotated[
    int,
    Field(description="How many of the oldest queries to skip.", json_schema_extra={"minimum": 0}),
]
StateArg = Annotated[
    dict[str, Any] | None,
    Field(description="Keys to set, each to any JSON value (at most 64 KiB each)."),
]
RemoveKeysArg = Annotated[
    list[str] | None,
    Field(description="Context keys to remove."),
]
DaysArg = Annotated[
    float,
    Field(
        description="Only sessions created in the last this many days.",
        json_schema_extra={"exclusiveMinimum": 0},
    ),
]
