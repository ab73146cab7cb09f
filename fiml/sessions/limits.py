"""What a caller may write into a session: every limit and every value rule, in one place.

The models' validators and the store call these same functions: the validators give an
early error on the models' own paths, and the store checks everything it writes, because
an in-place edit (``session.assets.append(...)``, ``query.parameters[...] = ...``) or a
model built or changed behind pydantic's back reaches it without any validator running.

One value model on every tier: PostgreSQL cannot hold a NUL character in text or JSON and
no tier can encode a lone surrogate as UTF-8, so text holding either is refused wherever
a caller can write it, with a typed error naming the field, on every deployment alike.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from uuid import UUID

from fiml.core.errors import ContextValueError, InvalidInputError, InvalidTTLError

__all__ = [
    "MAX_ASSETS",
    "MAX_BATCH_SIZE",
    "MAX_JSON_DEPTH",
    "MAX_LABEL_CHARS",
    "MAX_PARAMETERS_BYTES",
    "MAX_STATE_KEYS",
    "MAX_STATE_KEY_CHARS",
    "MAX_STATE_VALUE_BYTES",
    "MAX_SUMMARY_CHARS",
    "MAX_TAGS",
    "MAX_USER_ID_CHARS",
    "check_batch_size",
    "check_bool",
    "check_count",
    "check_hours",
    "check_json",
    "check_label",
    "check_number",
    "check_query",
    "check_state_key",
    "check_state_value",
    "check_text",
    "check_user_id",
    "checked_json",
    "checked_labels",
    "checked_state_value",
    "json_size",
    "normalize_assets",
    "normalize_tags",
    "to_json",
]

MAX_ASSETS = 50
MAX_TAGS = 20
MAX_LABEL_CHARS = 64
"""Characters of one asset, tag or query type."""
MAX_USER_ID_CHARS = 255
MAX_STATE_KEYS = 200
"""Keys per state section (context, preferences, intermediate results, metadata)."""
MAX_STATE_KEY_CHARS = 128
MAX_STATE_VALUE_BYTES = 64 * 1024
MAX_SUMMARY_CHARS = 2000
MAX_PARAMETERS_BYTES = 16 * 1024
MAX_JSON_DEPTH = 100
MAX_BATCH_SIZE = 10_000
"""Sessions one cleanup step may take at once."""

_NUL = "\x00"
_NUL_ESCAPE = "\\u0000"
"""How JSON writes a NUL character; also a substring of a typed backslash + ``u0000``."""
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_UNREADABLE_TEXT = "holds a NUL character or a lone surrogate, which storage cannot hold"


def to_json(value: Any) -> str:
    """Compact, strict JSON (no NaN, non-ASCII kept): how state values are stored and compared.

    Raises TypeError, ValueError or RecursionError for a value JSON cannot hold;
    :func:`checked_json` turns those into an error that names the field.
    """
    return _JSON_ENCODER.encode(value)


def _storable(text: str) -> bool:
    """False for text holding NUL or a lone surrogate (which UTF-8 cannot carry)."""
    if _NUL in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_text(field: str, value: Any, *, max_chars: int, min_chars: int = 1) -> str:
    """A string of ``min_chars``-``max_chars`` characters that every tier can store."""
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
        raise InvalidInputError(
            field, value, f"must be a string of {min_chars}-{max_chars} characters"
        )
    if not _storable(value):
        raise InvalidInputError(field, value, _UNREADABLE_TEXT)
    return value


def check_user_id(value: Any, *, optional: bool = True) -> str | None:
    """A user id: None (when ``optional``) or a storable string of 1-255 characters."""
    if value is None and optional:
        return None
    return check_text("user_id", value, max_chars=MAX_USER_ID_CHARS)


def check_label(field: str, value: Any) -> str:
    """An asset or a tag: 1-64 printable characters once stripped (NUL is not printable)."""
    if not isinstance(value, str):
        raise InvalidInputError(field, value, "must be a string")
    text = value.strip()
    if not text or len(text) > MAX_LABEL_CHARS or not text.isprintable():
        raise InvalidInputError(field, value, f"must be 1-{MAX_LABEL_CHARS} printable characters")
    return text


def normalize_assets(assets: Any) -> list[str]:
    """Validate asset symbols: a list of 1..MAX_ASSETS short strings, upper-cased, unique."""
    if not isinstance(assets, list | tuple) or not assets or len(assets) > MAX_ASSETS:
        raise InvalidInputError("assets", assets, f"must be a list of 1-{MAX_ASSETS} symbols")
    return checked_labels("assets", assets)


def normalize_tags(tags: Any) -> list[str]:
    """Validate tags: a list of at most MAX_TAGS short strings, unique, order kept."""
    if tags is None:
        return []
    if not isinstance(tags, list | tuple) or len(tags) > MAX_TAGS:
        raise InvalidInputError("tags", tags, f"must be a list of at most {MAX_TAGS} tags")
    return checked_labels("tags", tags)


def checked_labels(field: str, labels: Any) -> list[str]:
    """Each label of ``labels`` checked (assets upper-cased), duplicates dropped, order
    kept; their count is not checked here. An edited session's lists are checked this way,
    and their size after merging with concurrent writes by the backend (base.LIST_SIZES):
    a stale copy may hold fewer or more elements than the merged result will."""
    if not isinstance(labels, list | tuple):
        raise InvalidInputError(field, labels, "must be a list of strings")
    checked = [check_label(field, label) for label in labels]
    if field == "assets":
        checked = [label.upper() for label in checked]
    return list(dict.fromkeys(checked))


def _json_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _holds_nul(value: Any) -> bool:
    """Whether any string in ``value`` (object keys included) holds NUL, without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _NUL in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def checked_json(field: str, value: Any, limit: int) -> str:
    """``value`` as :func:`to_json` text; raise ContextValueError naming ``field`` if JSON
    cannot hold it, if it is bigger than ``limit`` bytes, nested deeper than
    :data:`MAX_JSON_DEPTH` (every reader, the MCP results wrapping it a few levels deeper,
    must serialize it again), or holds NUL or a lone surrogate in any key or string."""
    try:
        encoded = to_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ContextValueError(field, value, f"not JSON-serializable ({exc})") from None
    if encoded.isascii():
        size = len(encoded)
    else:
        try:
            size = len(encoded.encode())
        except UnicodeEncodeError:
            raise ContextValueError(field, value, "not valid Unicode (a lone surrogate)") from None
    if size > limit:
        raise ContextValueError(field, value, f"{size} bytes of JSON, above the {limit} limit")
    # JSON escapes NUL as \u0000; a typed backslash before "u0000" reads the same here, so
    # only a hit (rare) pays for the walk that tells them apart.
    if _NUL_ESCAPE in encoded and _holds_nul(value):
        raise ContextValueError(field, value, "holds a NUL character, which storage cannot hold")
    if len(encoded) > 2 * MAX_JSON_DEPTH:  # each level takes two brackets: short is shallow
        depth = _json_depth(value)
        if depth > MAX_JSON_DEPTH:
            raise ContextValueError(
                field, value, f"nested {depth} levels deep, above the {MAX_JSON_DEPTH} limit"
            )
    return encoded


_INT64 = 2**63
_ENTRY_BYTES = 6
"""JSON's quotes, colon and comma around one entry of an object."""


def _surely_fits(value: dict[Any, Any], limit: int) -> bool:
    """True if ``value`` is a flat object of storable strings, bools, nulls, 64-bit integers
    and finite floats whose JSON cannot exceed ``limit`` bytes; False when unsure.

    Six bytes per character bound any character's JSON (``\u001f`` is the longest), so
    the common small, flat query parameters are checked without being encoded.
    """
    budget = limit - 2
    for key, item in value.items():
        if type(key) is not str or not _storable(key):
            return False
        kind = type(item)
        if kind is str:
            if not _storable(item):
                return False
            size = len(item) + 2
        elif item is None or kind is bool:
            size = 5
        elif kind is int:
            if not -_INT64 <= item < _INT64:
                return False
            size = 20
        elif kind is float:
            if not math.isfinite(item):
                return False
            size = 24
        else:
            return False
        budget -= 6 * (len(key) + size) + _ENTRY_BYTES
        if budget < 0:
            return False
    return True


def check_json(field: str, value: Any, limit: int) -> None:
    """Raise as :func:`checked_json` would; flat, small objects are checked unencoded."""
    if not (isinstance(value, dict) and _surely_fits(value, limit)):
        checked_json(field, value, limit)


def json_size(field: str, value: Any, limit: int) -> int:
    """The size in bytes of ``value`` as checked JSON (see :func:`checked_json`)."""
    return len(checked_json(field, value, limit).encode())


def check_state_key(section: str, key: Any) -> str:
    """A state key: a storable string of 1-128 characters (field ``"<section> key"``)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_STATE_KEY_CHARS or not _storable(key):
        raise ContextValueError(
            f"{section} key",
            key,
            f"must be a string of 1-{MAX_STATE_KEY_CHARS} characters without NUL or "
            "lone surrogates",
        )
    return key


def check_state_value(section: str, key: str, value: Any) -> str:
    """One state value as checked JSON text (field ``"<section>[<key>]"``)."""
    return checked_json(f"{section}[{key!r}]", value, MAX_STATE_VALUE_BYTES)


def checked_state_value(section: str, key: Any, value: Any) -> Any:
    """Validate one state entry and return a JSON copy of its value (nothing shared)."""
    checked = check_state_key(section, key)
    return json.loads(check_state_value(section, checked, value))


def check_query(query: Any) -> None:
    """Check every field of a query the store is about to write, as it is now.

    Reads the fields themselves rather than trusting the model: a field can be set
    behind pydantic's back (``query.__dict__[...]``, ``model_construct``) or edited in
    place (``query.parameters[...]``), and a value no tier can read back would leave the
    session unreadable for good. The common case (plain types, small flat parameters)
    takes one type test per field.
    """
    query_id = getattr(query, "id", None)
    if not isinstance(query_id, UUID):
        raise InvalidInputError("query.id", query_id, "must be a UUID")
    timestamp = getattr(query, "timestamp", None)
    if not isinstance(timestamp, datetime) or timestamp.utcoffset() is None:
        raise InvalidInputError("query.timestamp", timestamp, "must be a timezone-aware datetime")
    query_type = getattr(query, "query_type", None)
    if type(query_type) is not str or not 0 < len(query_type) <= MAX_LABEL_CHARS:
        check_text("query.query_type", query_type, max_chars=MAX_LABEL_CHARS)
    elif not _storable(query_type):
        raise InvalidInputError("query.query_type", query_type, _UNREADABLE_TEXT)
    summary = getattr(query, "result_summary", None)
    if summary is not None:
        check_text("query.result_summary", summary, max_chars=MAX_SUMMARY_CHARS, min_chars=0)
    parameters = getattr(query, "parameters", None)
    if not isinstance(parameters, dict):
        raise ContextValueError("query.parameters", parameters, "must be an object")
    if not _surely_fits(parameters, MAX_PARAMETERS_BYTES):
        if not all(isinstance(key, str) for key in parameters):  # JSON would rename them
            raise ContextValueError("query.parameters", parameters, "keys must be strings")
        checked_json("query.parameters", parameters, MAX_PARAMETERS_BYTES)
    elapsed = getattr(query, "execution_time_ms", None)
    if elapsed is not None and not (type(elapsed) is float and 0 <= elapsed < math.inf):
        check_number("query.execution_time_ms", elapsed, minimum=0, maximum=math.inf)
    cache_hit = getattr(query, "cache_hit", None)
    if type(cache_hit) is not bool:
        raise InvalidInputError("query.cache_hit", cache_hit, "must be true or false")


def check_bool(field: str, value: Any) -> bool:
    """``value`` if it is True or False (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise InvalidInputError(field, value, "must be true or false")
    return value


def check_count(field: str, value: Any, *, minimum: int, maximum: int) -> int:
    """An integer (not a bool) from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidInputError(field, value, f"must be an integer from {minimum} to {maximum}")
    return value


def _as_float(value: Any) -> float:
    """A number as a float; an integer too big for one is an infinity of its sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_number(
    field: str, value: Any, *, minimum: float, maximum: float, above_minimum: bool = False
) -> float:
    """A finite number (not a bool) from ``minimum`` (excluded with ``above_minimum``) to
    ``maximum``, as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(field, value, "must be a number")
    number = _as_float(value)
    low_ok = number > minimum if above_minimum else number >= minimum
    if not (math.isfinite(number) and low_ok and number <= maximum):
        bound = "above" if above_minimum else "from"
        raise InvalidInputError(
            field, value, f"must be a number {bound} {minimum:g} to {maximum:g}"
        )
    return number


def check_hours(field: str, value: Any, *, maximum: float) -> float:
    """A TTL or an extension in hours: above 0 and at most ``maximum``, else InvalidTTLError."""
    number = _as_float(value) if isinstance(value, int | float) else math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and 0 < number <= maximum):
        raise InvalidTTLError(field, value, minimum=0, maximum=maximum)
    return number


def check_batch_size(value: Any) -> int:
    """How many sessions one cleanup step takes: an integer from 1 to 10,000."""
    return check_count("batch_size", value, minimum=1, maximum=MAX_BATCH_SIZE)
