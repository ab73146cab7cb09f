"""Hostile arguments for every tool and the session resource, through the SDK's client.

Every call ends as an ``isError`` result with a message for people (no traceback, no
internal names, never the generic "internal error" of an unexpected exception) or as a
result matching the tool's outputSchema. A refused call leaves every stored row as it
was, read-only tools never change a row, and after every call the server still serves.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from mcp import MCPError

from tests.fuzz.harness import (
    READ_ONLY_TOOLS,
    Harness,
    assert_readable,
    assert_session_json,
    assert_valid_result,
    error_message,
    owned_ids,
)
from tests.fuzz.strategies import FUZZ, TOOLS, Ref, arguments_for, resource_ids

_SPELLINGS = (
    str.upper,
    lambda s: "{" + s + "}",
    lambda s: "urn:uuid:" + s,
    lambda s: s.replace("-", ""),
    lambda s: f"  {s}\n",
)


def resolve(harness: Harness, value: Any, variant: int = 0) -> Any:
    """``value`` with every :class:`Ref` replaced by a real session id (or another spelling)."""
    if isinstance(value, Ref):
        name, _, spelled = value.name.partition(":")
        sid = harness.new_session() if name == "fresh" else harness.session(name)
        return _SPELLINGS[variant % len(_SPELLINGS)](sid) if spelled else sid
    if isinstance(value, dict):
        return {k: resolve(harness, v, variant) for k, v in value.items()}
    return value


def kind_of_error(message: str) -> str:
    """What a refusal was about, for hypothesis's statistics: "invalid limit", ..."""
    words = message.split(": ", 1)[-1].split()
    if words[:1] == ["invalid"] and len(words) > 1:
        return "invalid " + words[1].split("[")[0]
    if "validation error" in message:
        return "argument validation"
    return " ".join(w for w in words[:4] if not _looks_like_id(w))


def _looks_like_id(word: str) -> bool:
    return len(word) >= 32 and "-" in word


def test_every_tool_is_fuzzed(harness: Harness) -> None:
    assert sorted(harness.tools) == sorted(TOOLS)


@pytest.mark.parametrize("tool", TOOLS)
@FUZZ
@given(data=st.data())
def test_any_arguments_get_a_clear_error_or_a_valid_result(
    harness: Harness, tool: str, data: st.DataObject
) -> None:
    drawn = data.draw(arguments_for(tool), label="arguments")
    arguments = resolve(harness, drawn, data.draw(st.integers(0, 4), label="spelling"))
    before = harness.state()

    result = harness.call(tool, arguments)

    if result.is_error:
        event(f"refused: {kind_of_error(error_message(result))}")
        assert harness.state() == before, "a refused call changed the store"
    else:
        event("succeeded")
        assert_valid_result(result, harness.tools[tool])
        if tool in READ_ONLY_TOOLS:
            assert harness.state() == before, f"{tool} changed the store"
    harness.assert_serving()


@FUZZ
@given(data=st.data())
def test_any_session_uri_reads_the_callers_session_or_fails_clearly(
    harness: Harness, data: st.DataObject
) -> None:
    raw = data.draw(resource_ids, label="session_id")
    session_id = resolve(harness, raw, data.draw(st.integers(0, 4)))
    before = harness.state()

    outcome = harness.read(f"session://{session_id}")

    if isinstance(outcome, MCPError):
        assert_readable(str(outcome))
    else:
        [content] = outcome.contents
        assert_session_json(content.text, owned_ids(harness, "alice"))  # type: ignore[union-attr]
    assert harness.state() == before
    harness.assert_serving()


def test_foreign_sessions_in_any_spelling_stay_foreign(harness: Harness) -> None:
    """Another spelling of bob's session id (braces, urn:, no dashes, ...) is still bob's."""
    sid = harness.session("foreign")
    for variant in range(len(_SPELLINGS)):
        spelled = resolve(harness, Ref("foreign:variant"), variant)
        assert UUID(spelled.strip()) == UUID(sid)

        refused = harness.call("get-session-info", {"session_id": spelled})
        outcome = harness.read(f"session://{spelled}")

        assert error_message(refused).endswith(f"session {sid} not found")
        assert isinstance(outcome, MCPError) and str(outcome).endswith(f"session {sid} not found")


def test_the_pool_covers_every_session_state(harness: Harness) -> None:
    """The sessions fuzzed against really are in the states they are named after."""
    statuses = {}
    for name in ("foreign", "closed", "expired", "archived"):
        user = "bob" if name == "foreign" else "alice"
        result = harness.call("get-session-info", {"session_id": harness.session(name)}, user)
        statuses[name] = assert_valid_result(result, harness.tools["get-session-info"])

    assert {name: info["session"]["status"] for name, info in statuses.items()} == {
        "foreign": "active",
        "closed": "closed",
        "expired": "expired",
        "archived": "archived",
    }
    assert statuses["foreign"]["context"] == {"thesis": "bob's own"}
