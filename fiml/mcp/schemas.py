"""The MCP tools' typed arguments and results.

Arguments are ``Annotated`` types whose JSON schema tells clients what is allowed (a UUID,
one of the session types, 1-50 assets) while the values are validated by the store, so a
bad value gets FIML's own error message naming the field. Results are pydantic models, so
clients receive an ``outputSchema`` and ``structuredContent``.

The results publish a flat JSON schema (:class:`ResultModel`): the same values pass as
with pydantic's own schema, but with every ``$ref`` inlined, ``X | None`` as
``"type": [..., "null"]`` rather than ``anyOf``, and no keyword that cannot fail (the
generated ``title`` annotations, ``additionalProperties: true``). Clients that check
each result against the ``outputSchema`` (the Python SDK's client does, with jsonschema)
then do about a third less work per result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema

from fiml.market.base import Quote
from fiml.sessions.models import (
    MAX_ASSETS,
    MAX_TAGS,
    QueryRecord,
    Session,
    SessionStatus,
    SessionSummary,
    SessionType,
)
from fiml.sessions.store import MAX_PAGE, HistoryPage

__all__ = [
    "AnalyticsResult",
    "AssetCount",
    "AssetsArg",
    "ContextUpdateResult",
    "CursorArg",
    "DaysArg",
    "HistoryResult",
    "HoursArg",
    "OffsetArg",
    "OptionalSessionIdArg",
    "OptionalSessionTypeArg",
    "PageLimitArg",
    "QueryView",
    "QuoteView",
    "RemoveKeysArg",
    "RequestIdArg",
    "ResultModel",
    "SearchResult",
    "SessionContext",
    "SessionDetails",
    "SessionIdArg",
    "SessionInfo",
    "SessionList",
    "SessionListItem",
    "SessionStats",
    "SessionTypeArg",
    "StateArg",
    "TagCount",
    "TagsArg",
    "TtlArg",
    "flat_json_schema",
    "pydantic_json_schema",
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


# Keywords that only describe; they never make a value fail.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)
# Keywords that only constrain values of their own JSON type, so null passes them.
_TYPE_SPECIFIC = frozenset(
    {
        "format", "minLength", "maxLength", "pattern",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
        "contains", "minContains", "maxContains", "unevaluatedItems",
        "properties", "patternProperties", "additionalProperties", "required",
        "minProperties", "maxProperties", "propertyNames", "dependentRequired",
        "dependentSchemas", "unevaluatedProperties",
    }
)  # fmt: skip
# Where a keyword's value is a schema, a list of schemas, or a map of names to schemas.
_SCHEMA_VALUED = frozenset(
    {
        "items", "additionalProperties", "not", "if", "then", "else", "contains",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties",
    }
)  # fmt: skip
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_NULL = {"type": "null"}

Resolve = Callable[[JsonSchemaValue], JsonSchemaValue]


def flat_json_schema(schema: JsonSchemaValue, resolve: Resolve) -> JsonSchemaValue:
    """``schema`` rewritten to accept exactly the same JSON values with less to evaluate.

    Each ``$ref`` is replaced by what ``resolve`` returns for it (a recursive one is
    kept), ``anyOf: [X, {"type": "null"}]`` becomes X with ``"null"`` added to its
    ``type`` (and to its ``enum``) when X has no keyword that would then apply to null,
    and ``title`` annotations and ``additionalProperties: true`` are dropped. Values
    that are data, not schemas (``enum``, ``const``, ``default``, ``required``...) are
    copied untouched.
    """

    def walk(node: JsonSchemaValue, expanding: frozenset[str]) -> JsonSchemaValue:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in expanding:
            target = walk(resolve({"$ref": ref}), expanding | {ref})
            siblings = walk({k: v for k, v in node.items() if k != "$ref"}, expanding)
            return _with_siblings(target, siblings)
        flat: JsonSchemaValue = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "additionalProperties" and value is True:
                continue
            if key in _SCHEMA_VALUED and isinstance(value, dict):
                flat[key] = walk(value, expanding)
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                flat[key] = [walk(v, expanding) if isinstance(v, dict) else v for v in value]
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                flat[key] = {
                    name: walk(v, expanding) if isinstance(v, dict) else v
                    for name, v in value.items()
                }
            else:
                flat[key] = copy.deepcopy(value)
        return _nullable_as_type_list(flat)

    return walk(schema, frozenset())


def _with_siblings(target: JsonSchemaValue, siblings: JsonSchemaValue) -> JsonSchemaValue:
    """A ``$ref``'s target with the keywords written next to the ``$ref``."""
    clash = any(k in target and k not in _ANNOTATIONS for k in siblings)
    if clash:
        return {"allOf": [target], **siblings}
    return {**target, **siblings}


def _nullable_as_type_list(node: JsonSchemaValue) -> JsonSchemaValue:
    options = node.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and _NULL in options):
        return node
    other = options[1] if options[0] == _NULL else options[0]
    if not isinstance(other, dict) or set(other) - _ANNOTATIONS - _TYPE_SPECIFIC - {
        "type",
        "enum",
        "const",
    }:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if any(k in other and k not in _ANNOTATIONS for k in rest):
        return node
    merged: JsonSchemaValue = {**other, **rest}
    if "const" in merged:
        if "enum" in merged:
            return node
        merged["enum"] = [merged.pop("const")]
    if "enum" in merged:
        merged["enum"] = [*merged["enum"], None] if None not in merged["enum"] else merged["enum"]
    kind = other.get("type")
    if isinstance(kind, str):
        merged["type"] = [kind, "null"]
    elif isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        merged["type"] = kind if "null" in kind else [*kind, "null"]
    elif kind is not None or "enum" not in merged:
        return node
    return merged


class ResultModel(BaseModel):
    """A tool's result: its JSON schema is :func:`flat_json_schema` of pydantic's."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler, /
    ) -> JsonSchemaValue:
        return flat_json_schema(handler(core_schema), handler.resolve_ref_schema)


def pydantic_json_schema(model: type[BaseModel]) -> JsonSchemaValue:
    """pydantic's own JSON schema of ``model``, as if no :class:`ResultModel` flattened it.

    What the tools published before the flattening, for comparisons (tests, benchmarks).
    """
    hook = vars(ResultModel)["__get_pydantic_json_schema__"].__func__

    def unhooked(node: Any) -> Any:
        if isinstance(node, list):
            return [unhooked(item) for item in node]
        if not isinstance(node, dict):
            return node
        plain = {key: unhooked(value) for key, value in node.items()}
        metadata = plain.get("metadata")
        if isinstance(metadata, dict) and "pydantic_js_functions" in metadata:
            functions = metadata["pydantic_js_functions"]
            kept = [f for f in functions if getattr(f, "__func__", None) is not hook]
            plain["metadata"] = {**metadata, "pydantic_js_functions": kept}
        return plain

    core = unhooked(TypeAdapter(model).core_schema)
    return GenerateJsonSchema(by_alias=True).generate(core, mode="validation")


class QueryView(ResultModel):
    """One tracked query."""

    id: UUID
    timestamp: datetime
    query_type: str
    parameters: dict[str, Any]
    result_summary: str | None
    execution_time_ms: float | None
    cache_hit: bool

    @classmethod
    def from_records(cls, records: Iterable[QueryRecord]) -> list[QueryView]:
        """The views of stored queries, in one validation (half the cost of one by one)."""
        return _QUERY_VIEWS.validate_python(list(records), from_attributes=True)


_QUERY_VIEWS = TypeAdapter(list[QueryView])


class SessionDetails(ResultModel):
    """A session's identity, lifecycle and subject."""

    session_id: UUID
    session_type: SessionType
    status: SessionStatus
    assets: list[str]
    tags: list[str]
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    closed_at: datetime | None
    archived_at: datetime | None
    time_remaining_seconds: float = Field(description="Zero once the session has expired.")

    @classmethod
    def from_session(cls, session: Session) -> SessionDetails:
        """The details of a session."""
        return cls(
            session_id=session.id,
            session_type=session.type,
            status=session.status,
            assets=list(session.assets),
            tags=list(session.tags),
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_accessed_at=session.last_accessed_at,
            closed_at=session.closed_at,
            archived_at=session.archived_at,
            time_remaining_seconds=session.time_remaining.total_seconds(),
        )


class SessionStats(ResultModel):
    """Counters over a session's whole query history."""

    total_queries: int
    cache_hits: int
    cache_hit_rate: float
    query_types: dict[str, int]
    first_query_at: datetime | None
    last_query_at: datetime | None

    @classmethod
    def from_session(cls, session: Session) -> SessionStats:
        """The stats of a session."""
        history = session.state.history
        return cls(
            total_queries=history.total_queries,
            cache_hits=history.cache_hits,
            cache_hit_rate=history.cache_hit_rate,
            query_types=history.get_query_types_summary(),
            first_query_at=history.first_query_at,
            last_query_at=history.last_query_at,
        )


class SessionInfo(ResultModel):
    """Everything about a session: details, stats, recent queries and accumulated state."""

    session: SessionDetails
    stats: SessionStats
    recent_queries: list[QueryView] = Field(description="The latest queries, oldest first.")
    context: dict[str, Any]
    preferences: dict[str, Any]
    intermediate_results: dict[str, Any]

    @classmethod
    def from_session(cls, session: Session) -> SessionInfo:
        """Everything about a session (with the queries it was loaded with)."""
        state = session.state
        return cls(
            session=SessionDetails.from_session(session),
            stats=SessionStats.from_session(session),
            recent_queries=QueryView.from_records(state.history.queries),
            context=dict(state.context),
            preferences=dict(state.preferences),
            intermediate_results=dict(state.intermediate_results),
        )


class SessionListItem(ResultModel):
    """A session in a listing."""

    session_id: UUID
    session_type: SessionType
    status: SessionStatus
    assets: list[str]
    tags: list[str]
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    total_queries: int

    @classmethod
    def from_summary(cls, summary: SessionSummary) -> SessionListItem:
        """The listing entry of a session summary."""
        return cls(
            session_id=summary.id,
            session_type=summary.type,
            status=summary.status,
            assets=list(summary.assets),
            tags=list(summary.tags),
            created_at=summary.created_at,
            expires_at=summary.expires_at,
            last_accessed_at=summary.last_accessed_at,
            total_queries=summary.total_queries,
        )


class SessionList(ResultModel):
    """A page of the caller's sessions, newest first."""

    sessions: list[SessionListItem]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at end.")


class HistoryResult(ResultModel):
    """A page of a session's queries, oldest first."""

    session_id: UUID
    queries: list[QueryView]
    offset: int
    total_queries: int
    next_offset: int | None = Field(description="Pass as offset for the next page; null at end.")

    @classmethod
    def from_page(cls, page: HistoryPage) -> HistoryResult:
        """The result for a store history page."""
        return cls(
            session_id=page.session_id,
            queries=QueryView.from_records(page.queries),
            offset=page.offset,
            total_queries=page.total_queries,
            next_offset=page.next_offset,
        )


class ContextUpdateResult(ResultModel):
    """A session's context and preferences after an update."""

    session_id: UUID
    context: dict[str, Any]
    preferences: dict[str, Any]


class QuoteView(Quote):
    """A quote, with a one-line summary; ``synthetic`` is true for offline quotes."""

    summary_text: str = Field(description="The quote in one line, e.g. 'AAPL: $175.43 (+2.30%)'.")

    @classmethod
    def from_quote(cls, quote: Quote) -> QuoteView:
        """The view of a provider's quote."""
        return cls(**quote.model_dump(), summary_text=quote.summary())


class SessionContext(ResultModel):
    """What a session knows so far: its assets, its latest queries and its context."""

    session_id: UUID
    session_type: SessionType
    assets: list[str]
    total_queries: int
    recent_queries: list[QueryView] = Field(
        description="The latest queries, oldest first, ending with this one (unless it "
        "repeated an earlier request_id)."
    )
    context: dict[str, Any]


class SearchResult(ResultModel):
    """A quote, where it came from, and, when tracked, the session's context."""

    quote: QuoteView
    cache_hit: bool
    execution_time_ms: float
    tracked: bool = Field(description="True when the query was recorded in a session.")
    repeated: bool = Field(
        default=False,
        description="True when the session had already recorded this request_id: the query "
        "counts once, as first recorded.",
    )
    session: SessionContext | None = None


class AssetCount(ResultModel):
    """How many sessions studied an asset."""

    asset: str
    count: int


class TagCount(ResultModel):
    """How many sessions carry a tag."""

    tag: str
    count: int


class AnalyticsResult(ResultModel):
    """Usage figures over a window of days, for the caller or (admin) other users.

    Averages, rates, rankings and distributions describe the finished sessions of the
    window (archived after being closed or expiring); ``active_sessions`` counts those
    still running and ``total_sessions`` both together.
    """

    scope: Literal["user", "all"] = Field(description="One user's sessions, or every user's.")
    user_id: str | None = Field(description="Whose sessions; null when scope is 'all'.")
    session_type: SessionType | None
    days: float
    total_sessions: int
    active_sessions: int
    archived_sessions: int = Field(description="Finished sessions: closed or expired, archived.")
    total_queries: int
    avg_duration_seconds: float
    avg_queries_per_session: float
    abandonment_rate: float = Field(
        description="Share of finished sessions left to expire after fewer than 2 queries."
    )
    cache_hit_rate: float
    top_assets: list[AssetCount]
    query_type_distribution: dict[str, int]
    session_type_breakdown: dict[str, int]
    popular_tags: list[TagCount]
    message: str | None = Field(default=None, description="Set when there is no data.")
