"""Every size limit at its boundary: at the limit the call succeeds, one past it the call is
refused with a message naming the field, and the refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fiml.market import MarketData, MemoryQuoteCache, OfflineProvider, Quote
from fiml.sessions.analytics import MAX_DAYS
from fiml.sessions.models import (
    MAX_ASSETS,
    MAX_JSON_DEPTH,
    MAX_STATE_KEYS,
    MAX_STATE_VALUE_BYTES,
    MAX_SUMMARY_CHARS,
    MAX_TAGS,
    QueryRecord,
)
from fiml.sessions.store import MAX_PAGE
from tests.fuzz.harness import (
    Harness,
    assert_valid_result,
    error_message,
    fuzz_settings,
    harness_for,
)
from tests.fuzz.strategies import nested

LABEL = 64  # characters of one asset or tag
KEY = 128  # characters of one state key
MAX_TTL = 168.0  # hours, the default session_max_ttl_hours

Arguments = Callable[[Harness], tuple[str, dict[str, Any]]]


def _json_string(size: int, char: str = "x") -> str:
    """A string whose JSON encoding (quotes included) is exactly ``size`` bytes."""
    width = len(char.encode())
    body = char * ((size - 2) // width)
    return body + "y" * (size - 2 - len(body.encode()))


def create(**arguments: Any) -> Arguments:
    base = {"assets": ["AAPL"], "session_type": "equity"}
    return lambda harness: ("create-analysis-session", {**base, **arguments})


def update(**arguments: Any) -> Arguments:
    return lambda harness: (
        "update-session-context",
        {"session_id": harness.new_session(), **arguments},
    )


def on_session(tool: str, **arguments: Any) -> Arguments:
    return lambda harness: (tool, {"session_id": harness.new_session(), **arguments})


def plain(tool: str, **arguments: Any) -> Arguments:
    return lambda harness: (tool, arguments)


def as_admin(tool: str, **arguments: Any) -> Arguments:
    return lambda harness: (tool, {**arguments, "_as": "root"})


LIMITS: dict[str, tuple[Arguments, Arguments, str]] = {
    "assets-count": (
        create(assets=[f"A{i}" for i in range(MAX_ASSETS)]),
        create(assets=[f"A{i}" for i in range(MAX_ASSETS + 1)]),
        "invalid assets",
    ),
    "asset-length": (
        create(assets=["A" * LABEL]),
        create(assets=["A" * (LABEL + 1)]),
        "invalid assets",
    ),
    "tags-count": (
        create(tags=[f"t{i}" for i in range(MAX_TAGS)]),
        create(tags=[f"t{i}" for i in range(MAX_TAGS + 1)]),
        "invalid tags",
    ),
    "tag-length": (create(tags=["t" * LABEL]), create(tags=["t" * (LABEL + 1)]), "invalid tags"),
    "ttl-hours": (
        create(ttl_hours=MAX_TTL),
        create(ttl_hours=MAX_TTL + 0.001),
        "invalid ttl_hours",
    ),
    "context-value-bytes": (
        update(context={"k": _json_string(MAX_STATE_VALUE_BYTES)}),
        update(context={"k": _json_string(MAX_STATE_VALUE_BYTES + 1)}),
        "invalid context['k']: 65537 bytes of JSON, above the 65536 limit",
    ),
    "context-value-bytes-not-characters": (
        update(context={"k": _json_string(MAX_STATE_VALUE_BYTES, "€")}),
        update(context={"k": _json_string(MAX_STATE_VALUE_BYTES + 1, "€")}),
        "invalid context['k']: 65537 bytes of JSON",
    ),
    "preference-value-bytes": (
        update(preferences={"p": _json_string(MAX_STATE_VALUE_BYTES)}),
        update(preferences={"p": _json_string(MAX_STATE_VALUE_BYTES + 1)}),
        "invalid preferences['p']: 65537 bytes of JSON",
    ),
    "context-value-depth": (
        update(context={"k": nested(MAX_JSON_DEPTH, "list")}),
        update(context={"k": nested(MAX_JSON_DEPTH + 1, "dict")}),
        "invalid context['k']: nested 101 levels deep, above the 100 limit",
    ),
    "context-key-length": (
        update(context={"k" * KEY: 1}),
        update(context={"k" * (KEY + 1): 1}),
        "invalid context key: must be a string of 1-128 characters",
    ),
    "extend-hours": (
        on_session("extend-session", hours=MAX_TTL - 24),
        on_session("extend-session", hours=MAX_TTL - 24 + 0.02),
        "invalid hours",
    ),
    "list-page": (
        plain("list-sessions", limit=MAX_PAGE),
        plain("list-sessions", limit=MAX_PAGE + 1),
        "invalid limit 1001",
    ),
    "history-page": (
        on_session("get-session-history", limit=MAX_PAGE),
        on_session("get-session-history", limit=MAX_PAGE + 1),
        "invalid limit 1001",
    ),
    "symbol-length": (
        plain("search-by-symbol", symbol="S" * 20),
        plain("search-by-symbol", symbol="S" * 21),
        "invalid symbol",
    ),
    "market-length": (
        plain("search-by-symbol", symbol="AAPL", market="M" * 10),
        plain("search-by-symbol", symbol="AAPL", market="M" * 11),
        "invalid market",
    ),
    "analytics-days": (
        plain("get-session-analytics", days=MAX_DAYS),
        plain("get-session-analytics", days=MAX_DAYS + 0.001),
        "invalid days",
    ),
    "analytics-user-length": (
        as_admin("get-session-analytics", user_id="u" * 255),
        as_admin("get-session-analytics", user_id="u" * 256),
        "invalid user_id",
    ),
}


@pytest.mark.parametrize(("at_limit", "past_limit", "expected"), LIMITS.values(), ids=list(LIMITS))
def test_at_the_limit_succeeds_and_one_past_is_refused_by_name(
    harness: Harness, at_limit: Arguments, past_limit: Arguments, expected: str
) -> None:
    tool, accepted = at_limit(harness)
    user = accepted.pop("_as", "alice")
    assert_valid_result(harness.call(tool, accepted, user), harness.tools[tool])
    tool, refused = past_limit(harness)
    user = refused.pop("_as", "alice")
    before = harness.state()

    message = error_message(harness.call(tool, refused, user))

    assert expected in message
    assert harness.state() == before


def test_a_session_holds_at_most_its_query_limit(tmp_path: Path) -> None:
    with harness_for(fuzz_settings(tmp_path, session_max_queries_per_session=3)) as harness:
        sid = harness.new_session()
        for _ in range(3):
            tracked = harness.call("search-by-symbol", {"symbol": "AAPL", "session_id": sid})
            assert_valid_result(tracked, harness.tools["search-by-symbol"])
        before = harness.state()

        refused = harness.call("search-by-symbol", {"symbol": "AAPL", "session_id": sid})

        assert error_message(refused).endswith(f"session {sid} has reached its limit of 3 queries")
        assert harness.state() == before


def test_a_session_holds_at_most_its_context_key_limit(harness: Harness) -> None:
    sid = harness.new_session()
    full = {f"k{i}": i for i in range(MAX_STATE_KEYS)}
    assert_valid_result(
        harness.call("update-session-context", {"session_id": sid, "context": full}),
        harness.tools["update-session-context"],
    )
    before = harness.state()

    refused = harness.call("update-session-context", {"session_id": sid, "context": {"new": 1}})

    assert "invalid context" in error_message(refused)
    assert harness.state() == before


@pytest.mark.parametrize(
    "offset", [2**63 - 1, 2**63, 2**64 + 1], ids=["int64-max", "2^63", "2^64+1"]
)
def test_a_history_offset_past_the_database_integers_is_refused_by_name(
    harness: Harness, offset: int
) -> None:
    sid = harness.new_session()
    before = harness.state()

    refused = harness.call("get-session-history", {"session_id": sid, "offset": offset})

    assert "invalid offset" in error_message(refused)
    assert harness.state() == before


def test_a_query_record_holds_a_summary_up_to_its_limit() -> None:
    QueryRecord(query_type="search_by_symbol", result_summary="s" * MAX_SUMMARY_CHARS)

    with pytest.raises(ValidationError, match="result_summary"):
        QueryRecord(query_type="search_by_symbol", result_summary="s" * (MAX_SUMMARY_CHARS + 1))


def test_a_query_record_holds_parameters_up_to_16_kib() -> None:
    limit = 16 * 1024
    filler = "p" * (limit - len('{"p":""}'))
    QueryRecord(query_type="search_by_symbol", parameters={"p": filler})

    with pytest.raises(ValidationError, match="parameters"):
        QueryRecord(query_type="search_by_symbol", parameters={"p": filler + "p"})


class NamedAtLength(OfflineProvider):
    """Quotes whose one-line summary is exactly ``length`` characters long."""

    def __init__(self, length: int) -> None:
        super().__init__("equity")
        self.length = length

    async def get_quote(self, symbol: str, *, market: str | None = None) -> Quote:
        quote = await super().get_quote(symbol, market=market)
        short = quote.model_copy(update={"currency": "X", "change_percent": None})
        room = self.length - len(short.summary()) + 1
        return short.model_copy(update={"currency": "X" * room})


@pytest.mark.parametrize(
    ("length", "kept"),
    [(MAX_SUMMARY_CHARS, MAX_SUMMARY_CHARS), (MAX_SUMMARY_CHARS + 1, MAX_SUMMARY_CHARS)],
    ids=["at-limit", "one-past"],
)
def test_a_tracked_summary_is_cut_to_the_limit_not_lost(
    tmp_path: Path, length: int, kept: int
) -> None:
    market = MarketData(NamedAtLength(length), OfflineProvider("crypto"), MemoryQuoteCache(60))
    with harness_for(fuzz_settings(tmp_path), market=market) as harness:
        sid = harness.new_session()

        tracked = harness.call(
            "search-by-symbol", {"symbol": "AAPL", "session_id": sid, "context": "recent"}
        )

        result = assert_valid_result(tracked, harness.tools["search-by-symbol"])
        [query] = result["session"]["recent_queries"]
        assert len(query["result_summary"]) == kept
        assert query["result_summary"].endswith("…") == (length > kept)
