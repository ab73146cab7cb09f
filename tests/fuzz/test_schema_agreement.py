"""What each tool accepts is what its published inputSchema says.

Inputs are generated from the schema the server lists: for every property of every tool,
each JSON type the schema does not allow (a boolean for a number, a string for a number or
a boolean, a number for a string, ...) and each spelling of an enum value the schema does
not list. Each must be refused, naming the property, and change nothing; a call that only
uses what the schema allows is not refused for its types.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fuzz.harness import Harness, assert_valid_result, error_message
from tests.fuzz.strategies import TOOLS

SAMPLES: dict[str, list[Any]] = {
    "boolean": [True, False],
    "integer": [3],
    "number": [2.5],
    "string": ["2", "yes", "true"],
    "array": [["AAPL"]],
    "object": [{"a": 1}],
    "null": [None],
}
"""A value of each JSON type; strings that lax parsing would read as a number or a bool."""


def valid_arguments(harness: Harness) -> dict[str, dict[str, Any]]:
    """For each tool, arguments that use only what its schema allows, and succeed."""
    own = harness.new_session()
    return {
        "create-analysis-session": {
            "assets": ["AAPL"],
            "session_type": "equity",
            "ttl_hours": 2,
            "tags": ["t"],
        },
        "get-session-info": {"session_id": own, "recent_queries": 1},
        "list-sessions": {"include_archived": True, "limit": 5},
        "search-sessions": {
            "asset": "AAPL",
            "tag": "t",
            "session_type": "equity",
            "text": "growth",
            "since": "2020-01-01T00:00:00+00:00",
            "until": "2100-01-01T00:00:00Z",
            "include_archived": False,
            "limit": 5,
        },
        "extend-session": {"session_id": own, "hours": 1},
        "close-analysis-session": {"session_id": harness.new_session()},
        "get-session-history": {"session_id": own, "offset": 0, "limit": 5},
        "update-session-context": {
            "session_id": own,
            "context": {"k": 1},
            "preferences": {"p": "x"},
            "remove_context": ["gone"],
        },
        "search-by-symbol": {"symbol": "AAPL", "session_id": own, "context": "recent"},
        "search-by-coin": {"symbol": "BTC", "pair": "USDT", "session_id": own},
        "get-session-analytics": {"session_type": "equity", "days": 7},
        "share-session": {"session_id": own, "user_id": "bob"},
        "unshare-session": {"session_id": own, "user_id": "bob"},
        "list-shared-sessions": {"limit": 5, "cursor": ""},
        "save-session-template": {
            "name": "watch",
            "assets": ["AAPL"],
            "session_type": "equity",
            "tags": ["t"],
            "ttl_hours": 2,
            "preferences": {"p": "x"},
        },
        "list-session-templates": {"limit": 5, "cursor": ""},
        "get-session-timeline": {"session_id": own, "limit": 5},
        "fork-session": {"session_id": own, "after_queries": 0},
    }


def allowed_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property's schema admits (``number`` admits integers)."""
    if "anyOf" in schema:
        return set().union(*(allowed_types(branch) for branch in schema["anyOf"]))
    declared = schema.get("type")
    if declared is None:
        return set(SAMPLES)  # any JSON value
    types = {declared} if isinstance(declared, str) else set(declared)
    if "number" in types:
        types.add("integer")
    return types


def enum_of(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    for branch in schema.get("anyOf", []):
        if "enum" in branch:
            return list(branch["enum"])
    return None


def wrong_values(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) pairs the schema forbids by type or by enum."""
    allowed = allowed_types(schema)
    wrong = [
        (kind, value) for kind, values in SAMPLES.items() if kind not in allowed for value in values
    ]
    for value in enum_of(schema) or []:
        if isinstance(value, str):
            wrong += [("enum case", value.upper()), ("enum spacing", f" {value}")]
    return wrong


def test_every_tool_and_property_is_covered(harness: Harness) -> None:
    valid = valid_arguments(harness)
    assert sorted(valid) == sorted(harness.tools)
    for name, tool in harness.tools.items():
        properties = set(tool.input_schema.get("properties", {}))
        assert set(valid[name]) <= properties, name
        assert set(tool.input_schema.get("required", [])) <= set(valid[name]), name


@pytest.mark.parametrize("tool", TOOLS)
def test_what_the_schema_forbids_is_refused_and_what_it_allows_is_not(
    harness: Harness, tool: str
) -> None:
    valid = valid_arguments(harness)[tool]
    schema = harness.tools[tool].input_schema
    assert_valid_result(harness.call(tool, valid), harness.tools[tool])

    tried = 0
    for name, property_schema in schema["properties"].items():
        for label, value in wrong_values(property_schema):
            arguments = {**valid_arguments(harness)[tool], name: value}
            before = harness.state()

            result = harness.call(tool, arguments)

            assert result.is_error, f"{tool}: {name}={value!r} ({label}) was accepted"
            assert name in error_message(result), (tool, name, value)
            assert harness.state() == before, f"{tool}: a refused {name} changed the store"
            tried += 1
    assert tried > 0
