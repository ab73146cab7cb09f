"""What the fuzzers found, kept as regression tests.

Each of these used to end as "internal error (incident ...)" or worse; each now gets a
typed error naming the field, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fiml.core.errors import ContextValueError
from fiml.sessions.limits import json_size
from fiml.sessions.models import SessionState
from tests.fuzz.harness import Harness, assert_valid_result, error_message
from tests.fuzz.strategies import nested

HUGE_INT = 10**5000  # past Python's 4,300-digit limit for int -> str


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\ud800", "invalid context['k']: not valid Unicode (a lone surrogate)"),
        (["ok", {"deeper": "\udfff"}], "invalid context['k']: not valid Unicode"),
        (HUGE_INT, "invalid context['k']: not JSON-serializable (Exceeds the limit (4300 digits)"),
        (nested(250, "list"), "invalid context['k']: nested 250 levels deep, above the 100"),
    ],
    ids=["lone-surrogate", "nested-surrogate", "int-past-4300-digits", "250-deep"],
)
def test_context_values_that_used_to_crash_are_refused_by_name(
    harness: Harness, value: Any, expected: str
) -> None:
    sid = harness.new_session()
    before = harness.state()

    refused = harness.call("update-session-context", {"session_id": sid, "context": {"k": value}})

    assert expected in error_message(refused)
    assert harness.state() == before


@pytest.mark.parametrize("depth", [1_000, 10_000], ids=["1k", "10k"])
def test_the_store_refuses_deep_values_without_recursing(harness: Harness, depth: int) -> None:
    """Through the Python API any depth can arrive; the error is still a ContextValueError."""
    sid = harness.new_session()
    before = harness.state()

    with pytest.raises(ContextValueError) as refused:
        harness.run(
            lambda: harness.served.store.update_state(sid, context={"k": nested(depth, "list")})
        )

    assert refused.value.field == "context['k']"
    assert harness.state() == before


def test_a_value_deep_enough_to_break_every_reader_cannot_be_stored(harness: Harness) -> None:
    """900 levels used to be stored through the Python API (3 KB of JSON); afterwards no MCP
    tool could serialize the session, so it could never be read or tracked into again."""
    sid = harness.new_session()

    with pytest.raises(ContextValueError):
        harness.run(
            lambda: harness.served.store.update_state(sid, context={"k": nested(900, "list")})
        )
    info = harness.call("get-session-info", {"session_id": sid})
    tracked = harness.call("search-by-symbol", {"symbol": "AAPL", "session_id": sid})

    assert assert_valid_result(info, harness.tools["get-session-info"])["context"] == {}
    assert_valid_result(tracked, harness.tools["search-by-symbol"])


def test_a_key_with_a_lone_surrogate_is_refused_by_name() -> None:
    state = SessionState()

    with pytest.raises(ContextValueError) as refused:
        state.update_context("\ud800", 1)

    assert refused.value.field == "context key"
    assert state.context == {}


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), {1, 2}, object(), HUGE_INT, nested(10_000, "dict")],
    ids=["nan", "inf", "set", "object", "huge-int", "10k-deep"],
)
def test_json_size_refuses_with_a_printable_error(value: Any) -> None:
    """Building the error itself used to fail for values whose repr fails."""
    with pytest.raises(ContextValueError) as refused:
        json_size("context['k']", value, 64 * 1024)

    assert str(refused.value).startswith("invalid context['k'] ")
    assert len(str(refused.value)) < 300
    json.dumps(str(refused.value))
