"""Finding a user's sessions: the criteria, their checks, and the matching rules every tier
shares.

A session matches when it is the user's and every criterion given holds:

- ``asset``: the session holds it among its assets, held it once, or tracked a query whose
  ``symbol`` parameter is it (upper-cased, as assets are). The asset indexes only grow: an
  asset removed from a session still finds it, since the session did analyse it.
- ``tag``: one of the session's tags now (tags are labels, edited on purpose).
- ``session_type``: its type.
- ``since`` / ``until``: it was created at or after ``since``, before ``until``.
- ``text``: its context (the string values, at any depth), or the result summary of one of
  its tracked queries, holds every word of ``text``; words are runs of letters and digits,
  compared without case.

Results are newest first (created, then id, descending) and paged by the listing's cursor
(:class:`~fiml.sessions.backends.base.ListCursor`). Every bound is checked here, before a
tier is asked: a bad value is an InvalidInputError naming the argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fiml.core.errors import InvalidInputError
from fiml.sessions.identifiers import parse_session_type
from fiml.sessions.limits import MAX_LABEL_CHARS, check_bool, check_label
from fiml.sessions.models import QueryRecord

__all__ = [
    "MAX_SEARCH_TEXT_CHARS",
    "MAX_SEARCH_WORDS",
    "SessionSearch",
    "context_words",
    "context_words_from_json",
    "query_asset",
    "words_of",
]

MAX_SEARCH_TEXT_CHARS = 256
MAX_SEARCH_WORDS = 16
"""More words than this make a full-text query no better at finding and costlier."""

_WORD = re.compile(r"[^\W_]+")  # letters and digits: what SQLite's unicode61 and PostgreSQL keep


def words_of(text: str) -> list[str]:
    """The words of ``text``, lower-cased, in order."""
    return _WORD.findall(text.lower())


def query_asset(query: QueryRecord) -> str | None:
    """The asset a tracked query is about: its ``symbol`` parameter, as an asset is stored
    (stripped, upper-cased), or None when it has none that could be an asset."""
    symbol = query.parameters.get("symbol")
    if not isinstance(symbol, str):
        return None
    text = symbol.strip()
    if not text or len(text) > MAX_LABEL_CHARS or not text.isprintable():
        return None
    return text.upper()


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def context_words(context: Mapping[str, Any]) -> set[str]:
    """The words of a context's string values (what the SQL indexes hold of it)."""
    return {word for text in _strings(dict(context)) for word in words_of(text)}


def context_words_from_json(values: Iterable[str]) -> set[str]:
    """:func:`context_words` of a context stored as one JSON text per key (Redis)."""
    found: set[str] = set()
    for raw in values:
        try:
            found |= context_words({"": json.loads(raw)})
        except ValueError:
            continue  # a damaged value matches nothing; reading the session reports it
    return found


@dataclass(frozen=True, slots=True)
class SessionSearch:
    """Checked search criteria (see the module docstring); None: not a criterion."""

    asset: str | None = None
    tag: str | None = None
    session_type: str | None = None
    words: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    include_archived: bool = True

    @classmethod
    def checked(
        cls,
        *,
        asset: Any = None,
        tag: Any = None,
        session_type: Any = None,
        text: Any = None,
        since: Any = None,
        until: Any = None,
        include_archived: Any = True,
    ) -> SessionSearch:
        """The criteria, each checked; InvalidInputError naming the first bad one."""
        found_asset = None if asset is None else check_label("asset", asset).upper()
        found_tag = None if tag is None else check_label("tag", tag)
        kind = None if session_type is None else parse_session_type(session_type).value
        words: tuple[str, ...] = ()
        if text is not None:
            if not isinstance(text, str) or len(text) > MAX_SEARCH_TEXT_CHARS:
                raise InvalidInputError(
                    "text", text, f"must be a string of at most {MAX_SEARCH_TEXT_CHARS} characters"
                )
            words = tuple(dict.fromkeys(words_of(text)))
            if not words or len(words) > MAX_SEARCH_WORDS:
                raise InvalidInputError(
                    "text", text, f"must hold 1-{MAX_SEARCH_WORDS} words (letters and digits)"
                )
        start, end = _time("since", since), _time("until", until)
        if start is not None and end is not None and end <= start:
            raise InvalidInputError("until", until, "must be later than since")
        check_bool("include_archived", include_archived)
        return cls(found_asset, found_tag, kind, words, start, end, include_archived)

    def matches_words(self, context: set[str], summaries: Iterable[str | None]) -> bool:
        """Whether the words are all in the context, or all in one result summary."""
        wanted = set(self.words)
        if wanted <= context:
            return True
        return any(s is not None and wanted <= set(words_of(s)) for s in summaries)


def _time(field: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInputError(field, value, "must be an ISO 8601 time") from None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(field, value, "must be a time with its UTC offset")
    return value
