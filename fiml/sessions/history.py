"""A session's history: the queries an agent made and the counters over all of them.

Also what every session model shares: :func:`utcnow` and :data:`FROM_STORE`, the
validation context under which the models read back what a backend stored. Stored data
was checked when it was written, so the field validators, which exist for user input,
return it as it is under that context: re-checking would cost a JSON encoding of every
query's parameters on every read, and would make a record written under other limits
unreadable. pydantic still parses and checks every field's type and constraints.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from fiml.sessions.limits import (
    MAX_LABEL_CHARS,
    MAX_PARAMETERS_BYTES,
    MAX_SUMMARY_CHARS,
    check_json,
    check_text,
)

__all__ = [
    "FROM_STORE",
    "AnalysisHistory",
    "QueryRecord",
    "as_utc",
    "from_store",
    "queries_from_json",
    "queries_from_rows",
    "utcnow",
]

FROM_STORE: dict[str, Any] = {"from_store": True}
"""Validation context for data read back from storage (compared by identity): it was
checked when written, so the field validators return it unchanged."""


def from_store(info: ValidationInfo) -> bool:
    """Whether a validator is reading stored data (see :data:`FROM_STORE`)."""
    return info.context is FROM_STORE


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
        return value if from_store(info) else as_utc(value)  # every backend stores UTC

    @field_validator("query_type")
    @classmethod
    def _query_type(cls, value: str, info: ValidationInfo) -> str:
        if not from_store(info):
            check_text("query_type", value, max_chars=MAX_LABEL_CHARS)
        return value

    @field_validator("result_summary")
    @classmethod
    def _summary(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not from_store(info):
            check_text("result_summary", value, max_chars=MAX_SUMMARY_CHARS, min_chars=0)
        return value

    @field_validator("parameters")
    @classmethod
    def _json_parameters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not from_store(info):
            check_json("parameters", value, MAX_PARAMETERS_BYTES)
        return value


_QUERY_LIST = TypeAdapter(list[QueryRecord])


def queries_from_json(items: Sequence[str]) -> list[QueryRecord]:
    """Queries from the JSON documents a backend stored, in order, each a new record.

    The documents are joined into one JSON array, so pydantic parses them in one call.
    """
    if not items:
        return []
    return _QUERY_LIST.validate_json(f"[{','.join(items)}]", context=FROM_STORE)


def queries_from_rows(rows: Sequence[Any]) -> list[QueryRecord]:
    """Queries from stored rows (objects with the fields as attributes)."""
    return _QUERY_LIST.validate_python(rows, from_attributes=True, context=FROM_STORE)


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
