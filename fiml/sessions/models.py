"""The session data model: what an analysis session remembers.

A :class:`Session` holds its :class:`SessionState` (context, preferences, intermediate
results, metadata) and an :class:`AnalysisHistory` of :class:`QueryRecord` objects. The
history's counters (``total_queries``, cache hits, per-type counts) always describe the
whole history, even when only the most recent queries were loaded with the session.

The store remembers what a session looked like when it was read (its *baseline*), so that
``update_session`` writes only what the caller changed and concurrent writers never
overwrite each other.

Data read back from storage was validated when it was written, so backends rebuild models
through validators made for it (:data:`queries_from_json`, :func:`queries_from_rows`,
:func:`session_from_store`): pydantic-core still parses and checks every type, but the
models' Python field validators, which only re-check user input (JSON size and depth,
asset and tag normalization, conversion of times to UTC: every backend stores them in
UTC), are left out of them. Decoded queries are remembered by their stored JSON text
(:class:`DecodedQueries`), so a session read again costs less than it was read first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple
from uuid import UUID, uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import SchemaValidator

from fiml.core.errors import ContextValueError, InvalidInputError
from fiml.sessions.limits import (
    MAX_ASSETS,
    MAX_JSON_DEPTH,
    MAX_LABEL_CHARS,
    MAX_PARAMETERS_BYTES,
    MAX_STATE_KEYS,
    MAX_STATE_VALUE_BYTES,
    MAX_SUMMARY_CHARS,
    MAX_TAGS,
    check_json,
    check_text,
    check_user_id,
    checked_state_value,
    normalize_assets,
    normalize_tags,
    to_json,
)

__all__ = [
    "MAX_ASSETS",
    "MAX_JSON_DEPTH",
    "MAX_STATE_KEYS",
    "MAX_STATE_VALUE_BYTES",
    "MAX_SUMMARY_CHARS",
    "MAX_TAGS",
    "AnalysisHistory",
    "QueryRecord",
    "Session",
    "SessionState",
    "SessionStatus",
    "SessionSummary",
    "SessionType",
    "to_json",
    "utcnow",
]

STATE_SECTIONS = ("context", "preferences", "intermediate_results", "metadata")

FROM_STORE: dict[str, Any] = {"from_store": True}
"""Validation context for data read back from storage (compared by identity): it was
validated when written, so validators skip their costly re-checks."""


def _from_store(info: ValidationInfo) -> bool:
    return info.context is FROM_STORE


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SessionType(StrEnum):
    """What kind of analysis a session is for."""

    EQUITY = "equity"
    CRYPTO = "crypto"
    PORTFOLIO = "portfolio"
    COMPARATIVE = "comparative"
    MACRO = "macro"


class SessionStatus(StrEnum):
    """Where a session is in its life: active, closed by its user, expired, or archived."""

    ACTIVE = "active"
    CLOSED = "closed"
    EXPIRED = "expired"
    ARCHIVED = "archived"


class QueryRecord(BaseModel):
    """One query an agent made inside a session."""

    model_config = ConfigDict(validate_assignment=True)

    id: UUID = Field(default_factory=uuid4)
    timestamp: datetime = Field(default_factory=utcnow)
    query_type: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    parameters: dict[str, Any] = Field(default_factory=dict)
    result_summary: str | None = Field(default=None, max_length=MAX_SUMMARY_CHARS)
    execution_time_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_hit: bool = False

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        return value if _from_store(info) else _aware(value)  # stored times are UTC already

    @field_validator("query_type")
    @classmethod
    def _query_type(cls, value: str, info: ValidationInfo) -> str:
        if not _from_store(info):
            check_text("query_type", value, max_chars=MAX_LABEL_CHARS)
        return value

    @field_validator("result_summary")
    @classmethod
    def _summary(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _from_store(info):
            check_text("result_summary", value, max_chars=MAX_SUMMARY_CHARS, min_chars=0)
        return value

    @field_validator("parameters")
    @classmethod
    def _json_parameters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not _from_store(info):
            check_json("parameters", value, MAX_PARAMETERS_BYTES)
        return value


def _without_field_validators(schema: Any) -> Any:
    """A field's core schema without the Python validators wrapped around its type."""
    kind = schema["type"]
    if kind in ("function-after", "function-before"):
        return _without_field_validators(schema["schema"])
    if kind == "default":
        return {**schema, "schema": _without_field_validators(schema["schema"])}
    return schema


def stored_validator(model: type[BaseModel], *, many: bool = False) -> SchemaValidator:
    """A validator of ``model`` (or of a list of them) for data a backend stored.

    It is the model's own core schema with the fields' Python validators left out: every
    one of them only re-checks user input and returns stored data unchanged (see
    :data:`FROM_STORE`), and calling them cost about a quarter of rebuilding a query.
    Types, constraints, defaults and the model's post-init still apply, and the instances
    are of ``model`` itself. Callers still pass :data:`FROM_STORE`, so that should this
    validator ever keep the Python validators, they would skip their checks as before.
    """
    schema = model.__pydantic_core_schema__
    if schema["type"] != "model" or schema["schema"]["type"] != "model-fields":
        raise TypeError(f"{model.__name__} has no plain model schema")
    fields = schema["schema"]["fields"]
    stripped: Any = {
        **schema,
        "schema": {
            **schema["schema"],
            "fields": {
                name: {**field, "schema": _without_field_validators(field["schema"])}
                for name, field in fields.items()
            },
        },
    }
    if many:
        stripped = {"type": "list", "items_schema": stripped}
    # pydantic-core builds a schema that names a complete model class from that class's
    # own validator ("prebuilt"), validators included; so the class reads as incomplete
    # while this one is built. Nothing else runs meanwhile: this happens at import.
    model.__pydantic_complete__ = False
    try:
        return SchemaValidator(stripped)
    finally:
        model.__pydantic_complete__ = True


_STORED_QUERIES = stored_validator(QueryRecord, many=True)
_SCALARS = (str, int, float, bool, type(None))
_new_object = object.__new__
_set_attribute = object.__setattr__


class DecodedQueries:
    """Stored queries decoded from their JSON text, remembering recent decodings.

    A stored query never changes, and an agent reads the same recent queries on every
    tool call, so decoding is remembered by the exact JSON text: a text seen before gives
    a *new* :class:`QueryRecord` made from the one decoded then, which costs about half
    as much as parsing and validating the text again. Only what cannot be changed in
    place is shared between the records handed out (the UUID, the datetime, strings,
    numbers); each record gets its own ``parameters`` dict and field set, so no caller
    can reach another's record or the remembered one.

    Remembered are records whose every field came from the text (no default filled in)
    and whose parameters are flat (scalar values, which a shallow copy separates), from
    texts of at most ``max_chars`` characters; at most ``max_entries`` of them, the
    oldest forgotten first. Safe to share between threads: each step is one dict
    operation.
    """

    def __init__(self, *, max_entries: int = 4096, max_chars: int = 1024) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._decoded: dict[str, QueryRecord] = {}
        self._all_fields = frozenset(QueryRecord.model_fields)

    def __len__(self) -> int:
        return len(self._decoded)

    def __contains__(self, text: object) -> bool:
        """Whether the decoding of ``text`` is remembered."""
        return text in self._decoded

    def clear(self) -> None:
        """Forget every remembered decoding."""
        self._decoded.clear()

    def __call__(self, items: Sequence[str]) -> list[QueryRecord]:
        """The queries of ``items`` (JSON texts), in order, each a new record."""
        if not items:
            return []
        known = self._decoded.get
        found = [known(text) for text in items]
        missing = [text for text, record in zip(items, found, strict=True) if record is None]
        if not missing:
            return [self._copy(record) for record in found]  # type: ignore[arg-type]
        decoded: list[QueryRecord] = _STORED_QUERIES.validate_json(
            f"[{','.join(missing)}]", context=FROM_STORE
        )
        fresh = iter(decoded)
        queries = []
        for text, record in zip(items, found, strict=True):
            if record is not None:
                queries.append(self._copy(record))
                continue
            new = next(fresh)
            if self._keeps(text, new):
                self._remember(text, new)
                new = self._copy(new)
            queries.append(new)
        return queries

    def _keeps(self, text: str, record: QueryRecord) -> bool:
        return (
            len(text) <= self.max_chars
            and record.__pydantic_fields_set__ == self._all_fields
            and all(type(value) in _SCALARS for value in record.parameters.values())
        )

    def _remember(self, text: str, record: QueryRecord) -> None:
        decoded = self._decoded
        while len(decoded) >= self.max_entries:
            try:
                del decoded[next(iter(decoded))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break
        decoded[text] = record

    @staticmethod
    def _copy(record: QueryRecord) -> QueryRecord:
        values = record.__dict__.copy()
        values["parameters"] = values["parameters"].copy()
        copy: QueryRecord = _new_object(QueryRecord)
        _set_attribute(copy, "__dict__", values)
        _set_attribute(copy, "__pydantic_fields_set__", set(record.__pydantic_fields_set__))
        _set_attribute(copy, "__pydantic_extra__", None)
        _set_attribute(copy, "__pydantic_private__", None)
        return copy


queries_from_json = DecodedQueries()
"""Queries from the JSON documents a backend stored (see :class:`DecodedQueries`)."""


def queries_from_rows(rows: Sequence[Any]) -> list[QueryRecord]:
    """Queries from stored rows (objects with the fields as attributes)."""
    queries: list[QueryRecord] = _STORED_QUERIES.validate_python(
        rows, from_attributes=True, context=FROM_STORE
    )
    return queries


class AnalysisHistory(BaseModel):
    """The queries of a session and counters over all of them.

    ``queries`` may hold only the most recent queries (see ``SessionStore.get_session``);
    ``total_queries``, ``cache_hits`` and ``query_type_counts`` always cover the whole
    history.
    """

    queries: list[QueryRecord] = Field(default_factory=list)
    total_queries: int = Field(default=0, ge=0)
    cache_hits: int = Field(default=0, ge=0)
    query_type_counts: dict[str, int] = Field(default_factory=dict)
    first_query_at: datetime | None = None
    last_query_at: datetime | None = None

    def add_query(self, query: QueryRecord) -> None:
        """Append a query and update the counters."""
        self.queries.append(query)
        self.total_queries += 1
        self.cache_hits += int(query.cache_hit)
        counts = self.query_type_counts
        counts[query.query_type] = counts.get(query.query_type, 0) + 1
        if self.first_query_at is None or query.timestamp < self.first_query_at:
            self.first_query_at = query.timestamp
        if self.last_query_at is None or query.timestamp > self.last_query_at:
            self.last_query_at = query.timestamp

    def get_recent_queries(self, limit: int = 10) -> list[QueryRecord]:
        """The ``limit`` most recent loaded queries, oldest first."""
        return self.queries[-limit:] if limit > 0 else []

    def get_query_types_summary(self) -> dict[str, int]:
        """How many queries of each type the whole history holds."""
        return dict(self.query_type_counts)

    @property
    def cache_hit_rate(self) -> float:
        """Share of all queries served from cache (0.0 with no queries)."""
        return self.cache_hits / self.total_queries if self.total_queries else 0.0


class SessionState(BaseModel):
    """What an agent builds up in a session: context, preferences, intermediate results."""

    context: dict[str, Any] = Field(default_factory=dict)
    preferences: dict[str, Any] = Field(default_factory=dict)
    intermediate_results: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    history: AnalysisHistory = Field(default_factory=AnalysisHistory)

    def _put(self, section: str, key: str, value: Any) -> None:
        target: dict[str, Any] = getattr(self, section)
        checked = checked_state_value(section, key, value)
        if key not in target and len(target) >= MAX_STATE_KEYS:
            raise ContextValueError(section, key, f"holds the maximum of {MAX_STATE_KEYS} keys")
        target[key] = checked

    def update_context(self, key: str, value: Any) -> None:
        """Set a context key; the value must be JSON (at most 64 KiB)."""
        self._put("context", key, value)

    def get_context(self, key: str, default: Any = None) -> Any:
        """A context value, or ``default``."""
        return self.context.get(key, default)

    def set_preference(self, key: str, value: Any) -> None:
        """Set a preference key; the value must be JSON (at most 64 KiB)."""
        self._put("preferences", key, value)

    def get_preference(self, key: str, default: Any = None) -> Any:
        """A preference value, or ``default``."""
        return self.preferences.get(key, default)

    def store_intermediate_result(self, key: str, value: Any) -> None:
        """Keep an intermediate result under ``key``; the value must be JSON."""
        self._put("intermediate_results", key, value)

    def get_intermediate_result(self, key: str, default: Any = None) -> Any:
        """An intermediate result, or ``default``."""
        return self.intermediate_results.get(key, default)

    def set_metadata(self, key: str, value: Any) -> None:
        """Set a metadata key; the value must be JSON."""
        self._put("metadata", key, value)


class Baseline(NamedTuple):
    """What a session looked like when it was read; the store diffs against it.

    ``sections`` holds each state value as :func:`to_json` text: a value is unchanged
    exactly when it encodes to the same text (``1``, ``1.0`` and ``true`` differ), and the
    caller's later in-place edits cannot reach the baseline.
    """

    version: int
    query_ids: tuple[UUID, ...]
    sections: dict[str, dict[str, str]]
    assets: list[str]
    tags: list[str]
    expires_at: datetime


class Session(BaseModel):
    """An analysis session: assets under study, accumulated state, lifecycle timestamps."""

    model_config = ConfigDict(validate_assignment=True)
    _baseline: Baseline | None = PrivateAttr(default=None)
    DEFAULT_TTL_HOURS: ClassVar[float] = 24
    """The TTL of a session built without ``expires_at`` (the store uses its settings)."""

    id: UUID = Field(default_factory=uuid4)
    user_id: str | None = None
    type: SessionType
    assets: list[str]
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=lambda fields: _default_expiry(fields))
    last_accessed_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    archived_at: datetime | None = None
    version: int = 0
    state: SessionState = Field(default_factory=SessionState)

    @field_validator("created_at", "expires_at", "last_accessed_at", "closed_at", "archived_at")
    @classmethod
    def _utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None or _from_store(info):  # stored times are UTC already
            return value
        return _aware(value)

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if _from_store(info) else check_user_id(value)

    @field_validator("assets")
    @classmethod
    def _assets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return value if _from_store(info) else normalize_assets(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return value if _from_store(info) else normalize_tags(value)

    @property
    def session_type(self) -> SessionType:
        """Alias of ``type``."""
        return self.type

    @property
    def is_expired(self) -> bool:
        """True once the session is past its TTL (closed sessions end when closed)."""
        return utcnow() >= self.expires_at

    @property
    def is_archived(self) -> bool:
        """True once the session has moved to the archive."""
        return self.archived_at is not None

    @property
    def is_closed(self) -> bool:
        """True if the session's user finished it (as opposed to letting it expire)."""
        return self.closed_at is not None

    @property
    def status(self) -> SessionStatus:
        """Archived, closed, expired or active, in that order of precedence."""
        if self.is_archived:
            return SessionStatus.ARCHIVED
        if self.is_closed:
            return SessionStatus.CLOSED
        return SessionStatus.EXPIRED if self.is_expired else SessionStatus.ACTIVE

    @property
    def time_remaining(self) -> timedelta:
        """Time until expiry; zero once expired."""
        return max(self.expires_at - utcnow(), timedelta(0))

    @property
    def duration(self) -> timedelta:
        """From creation to the end (closed, or last activity if it expired) or to now."""
        end = self.closed_at or (self.last_accessed_at if self.is_expired else utcnow())
        return max(end - self.created_at, timedelta(0))

    def extend(self, hours: float) -> None:
        """Push expiry ``hours`` later (the store checks it against the maximum TTL)."""
        if not isinstance(hours, int | float) or not math.isfinite(hours) or hours <= 0:
            raise InvalidInputError("hours", hours, "must be a positive number of hours")
        self.expires_at = self.expires_at + timedelta(hours=hours)

    def touch(self) -> None:
        """Record activity now."""
        self.last_accessed_at = utcnow()

    def add_query(self, query: QueryRecord) -> None:
        """Record a query in the history and touch the session."""
        self.state.history.add_query(query)
        self.touch()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (UUIDs and datetimes as strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """Rebuild a session from :meth:`to_dict` output."""
        return cls.model_validate(data)

    def mark_baseline(self, sections: dict[str, dict[str, str]] | None = None) -> None:
        """Remember the current content as what the store holds (used by the store).

        ``sections`` may give the state values as the :func:`to_json` text they were
        read from (the backend's own copy), which saves encoding them again.
        """
        state = self.state
        if sections is None:
            sections = {}
            for name in STATE_SECTIONS:
                values: dict[str, Any] = getattr(state, name)
                sections[name] = {key: to_json(value) for key, value in values.items()}
        # Straight into pydantic's store of private attributes: the same as assigning
        # ``self._baseline``, without the generic attribute-setting path on every read.
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        private["_baseline"] = Baseline(
            self.version,
            tuple([q.id for q in state.history.queries]),  # hashed only on a write
            sections,
            list(self.assets),
            list(self.tags),
            self.expires_at,
        )

    @property
    def baseline(self) -> Baseline | None:
        """What the session looked like when last read from or written to the store."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        baseline: Baseline | None = private["_baseline"]
        return baseline


def _default_expiry(fields: dict[str, Any]) -> datetime:
    """``Session.DEFAULT_TTL_HOURS`` after the session's creation, as the original models
    defaulted it (``created_at`` is missing here only if it failed its own validation)."""
    created: datetime = fields.get("created_at") or utcnow()
    return created + timedelta(hours=Session.DEFAULT_TTL_HOURS)


_STORED_SESSION = stored_validator(Session)


def session_from_store(
    fields: dict[str, Any],
    *,
    sections: dict[str, dict[str, str]] | None = None,
    baseline: bool = True,
) -> Session:
    """A session from the fields (and nested state) a backend stored, skipping re-checks,
    its baseline marked: it is what the store holds. ``sections`` are the state values as
    the :func:`to_json` text the backend read, if it has them (see
    :meth:`Session.mark_baseline`); ``baseline=False`` leaves the baseline unmarked, for a
    copy nobody writes back through the store (archival)."""
    session: Session = _STORED_SESSION.validate_python(fields, context=FROM_STORE)
    if baseline:
        session.mark_baseline(sections)
    return session


class SessionSummary(BaseModel):
    """A light view of a session for listings."""

    id: UUID
    user_id: str | None
    type: SessionType
    assets: list[str]
    tags: list[str]
    status: SessionStatus
    created_at: datetime
    expires_at: datetime
    last_accessed_at: datetime
    closed_at: datetime | None = None
    archived_at: datetime | None = None
    total_queries: int
    is_expired: bool
    is_archived: bool

    @classmethod
    def from_session(cls, session: Session) -> SessionSummary:
        """Summarize a session."""
        return cls(
            id=session.id,
            user_id=session.user_id,
            type=session.type,
            assets=list(session.assets),
            tags=list(session.tags),
            status=session.status,
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_accessed_at=session.last_accessed_at,
            closed_at=session.closed_at,
            archived_at=session.archived_at,
            total_queries=session.state.history.total_queries,
            is_expired=session.is_expired,
            is_archived=session.is_archived,
        )
