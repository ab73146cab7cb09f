"""The tools' published output schemas: flat, and equivalent to pydantic's own.

:func:`fiml.mcp.flat_schema.flat_json_schema` rewrites pydantic's schema so clients that
check every result (the SDK's client does, with jsonschema) do less work. Here: no
``$ref``/``anyOf`` is left, every real result passes the published schema, and the flat
schema and pydantic's own accept and reject exactly the same values, real results and
mutations of them alike.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from jsonschema.protocols import Validator
from mcp import Client
from pydantic import BaseModel
from referencing import Registry

from fiml.mcp import schemas, share_tools, template_tools
from fiml.mcp.flat_schema import flat_json_schema, pydantic_json_schema
from tests.mcp.conftest import Connect, new_session, ok

RESULT_MODELS: dict[str, type[BaseModel]] = {
    "create-analysis-session": schemas.SessionDetails,
    "get-session-info": schemas.SessionInfo,
    "list-sessions": schemas.SessionList,
    "search-sessions": schemas.SessionList,
    "extend-session": schemas.SessionDetails,
    "close-analysis-session": schemas.SessionDetails,
    "get-session-history": schemas.HistoryResult,
    "update-session-context": schemas.ContextUpdateResult,
    "search-by-symbol": schemas.SearchResult,
    "search-by-coin": schemas.SearchResult,
    "get-session-analytics": schemas.AnalyticsResult,
    "share-session": share_tools.ShareResult,
    "unshare-session": share_tools.ShareResult,
    "list-shared-sessions": share_tools.SharedSessionList,
    "save-session-template": template_tools.TemplateView,
    "list-session-templates": template_tools.TemplateList,
    "get-session-timeline": schemas.TimelineResult,
    "fork-session": schemas.ForkResult,
}


def validator(schema: dict[str, Any]) -> Validator:
    """A validator as the SDK's client builds one: checked schema, no remote refs."""
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    checker: Validator = cls(schema, registry=Registry())
    return checker


def mutations(value: Any) -> Iterator[Any]:
    """``value`` with one part replaced by another JSON type, removed, or added to."""
    replacements: list[Any] = [None, 0, 1.5, True, "x", [], {}, ["x"], {"k": None}, "equity"]
    for path in _paths(value):
        for replacement in replacements:
            yield _replaced(value, path, replacement)
        parent, last = path[:-1], path[-1]
        if isinstance(last, str):
            removed = copy.deepcopy(value)
            del _at(removed, parent)[last]
            yield removed
    for path in [(), *_paths(value)]:
        node = _at(value, path)
        if isinstance(node, dict):
            added = copy.deepcopy(value)
            _at(added, path)["unexpected"] = 1
            yield added


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if not isinstance(value, dict | list):
        return
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _replaced(value: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    copied = copy.deepcopy(value)
    _at(copied, path[:-1])[path[-1]] = replacement
    return copied


async def real_results(client: Client) -> dict[str, list[dict[str, Any]]]:
    """At least one real structured result of every tool, tracked and untracked."""
    sid = await new_session(client, "AAPL", "BTC", tags=["t"], ttl_hours=2)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in RESULT_MODELS}

    async def call(tool: str, /, **arguments: Any) -> None:
        results[tool].append(await ok(client, tool, **arguments))

    await call("create-analysis-session", assets=["MSFT"], session_type="equity")
    await call("search-by-symbol", symbol="AAPL")
    await call("search-by-symbol", symbol="AAPL", session_id=sid)
    await call("search-by-coin", symbol="BTC", session_id=sid)
    await call("update-session-context", session_id=sid, context={"a": [1, {"b": None}]})
    await call("get-session-info", session_id=sid)
    await call("get-session-history", session_id=sid, limit=1)
    await call("get-session-timeline", session_id=sid)
    await call("fork-session", session_id=sid, after_queries=1)
    await call("list-sessions", limit=1)
    await call("search-sessions", asset="AAPL", limit=1)
    await call("extend-session", session_id=sid, hours=1)
    await call("close-analysis-session", session_id=sid)
    await call("get-session-info", session_id=sid)
    await call("get-session-analytics")
    await call("share-session", session_id=sid, user_id="bob")
    await call("list-shared-sessions")  # its items' schema: tests/mcp/test_sharing_tools.py
    await call("unshare-session", session_id=sid, user_id="bob")
    await call("save-session-template", name="t", assets=["AAPL"], session_type="equity")
    await call(
        "save-session-template",
        name="u",
        assets=["BTC"],
        session_type="crypto",
        tags=["x"],
        ttl_hours=2,
        preferences={"p": [1]},
    )
    await call("list-session-templates")
    return results


async def test_published_schemas_are_flat_objects(connect: Connect) -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == set(RESULT_MODELS)
    for tool in tools:
        schema = tool.output_schema
        assert schema is not None and schema["type"] == "object", tool.name
        text = json.dumps(schema)
        for keyword in ('"$ref"', '"$defs"', '"anyOf"', '"title"'):
            assert keyword not in text, (tool.name, keyword)
        validator(schema)


async def test_every_real_result_passes_its_published_schema(connect: Connect) -> None:
    async with connect() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        results = await real_results(client)
    for name, values in results.items():
        assert values, name
        schema = tools[name].output_schema
        assert schema is not None
        checker = validator(schema)
        for value in values:
            assert list(checker.iter_errors(value)) == [], name


async def test_flat_and_pydantic_schemas_accept_the_same_values(connect: Connect) -> None:
    async with connect() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        results = await real_results(client)
    checked = 0
    for name, values in results.items():
        published = tools[name].output_schema
        assert published is not None
        flat, plain = validator(published), validator(pydantic_json_schema(RESULT_MODELS[name]))
        for value in values:
            for candidate in [value, *mutations(value)]:
                assert flat.is_valid(candidate) == plain.is_valid(candidate), (name, candidate)
                checked += 1
    assert checked > 1000


def test_pydantic_json_schema_is_pydantic_own_and_leaves_the_flat_one_published() -> None:
    assert {"$defs", "title"} <= set(pydantic_json_schema(schemas.SessionInfo))
    for model in RESULT_MODELS.values():
        assert "title" in pydantic_json_schema(model), model
        flat = json.dumps(model.model_json_schema())
        for keyword in ('"$ref"', '"$defs"', '"anyOf"', '"title"'):
            assert keyword not in flat, (model, keyword)


# flat_json_schema on hand-written schemas: each rule, and what must stay as it is.

DEFS: dict[str, Any] = {
    "Kind": {"enum": ["a", "b"], "type": "string", "title": "Kind"},
    "Point": {
        "type": "object",
        "title": "Point",
        "properties": {"x": {"type": "integer"}, "title": {"type": "string", "title": "Title"}},
        "required": ["x"],
    },
    "Tree": {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}},
    },
}
CASES: list[tuple[dict[str, Any], list[Any]]] = [
    (
        {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}], "default": None},
        [None, "2024-01-01T00:00:00Z", 1, [], {}],
    ),
    ({"anyOf": [{"$ref": "#/$defs/Kind"}, {"type": "null"}]}, [None, "a", "b", "c", 1]),
    ({"anyOf": [{"const": 3, "type": "integer"}, {"type": "null"}]}, [None, 3, 4, "3"]),
    ({"anyOf": [{"type": ["string", "integer"]}, {"type": "null"}]}, [None, "s", 1, 1.5, []]),
    (
        {"anyOf": [{"type": "string"}, {"type": "null"}], "minLength": 2},
        [None, "", "ab", 5],
    ),
    (
        {"anyOf": [{"type": "integer", "not": {"const": 0}}, {"type": "null"}]},
        [None, 0, 1, "x"],
    ),
    (
        {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        [None, 1, "x", 1.5],
    ),
    (
        {"$ref": "#/$defs/Point", "description": "where"},
        [{"x": 1}, {"x": 1, "title": "t"}, {"x": 1, "title": 2}, {}, {"x": "1"}, None],
    ),
    ({"$ref": "#/$defs/Point", "required": ["y"]}, [{"x": 1}, {"y": 1}, {"x": 1, "y": 2}]),
    (
        {"type": "object", "additionalProperties": True, "properties": {"a": {"type": "integer"}}},
        [{}, {"a": 1, "b": 2}, {"a": "1"}, []],
    ),
    ({"$ref": "#/$defs/Tree"}, [{}, {"children": [{}, {"children": []}]}, {"children": [1]}]),
    (
        {"type": "array", "items": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]}},
        [[], [None, {"x": 1}], [{"x": "no"}], [1]],
    ),
]


@pytest.mark.parametrize(("schema", "values"), CASES)
def test_flat_json_schema_keeps_what_is_valid(schema: dict[str, Any], values: list[Any]) -> None:
    def resolve(ref: dict[str, Any]) -> dict[str, Any]:
        resolved: dict[str, Any] = DEFS[ref["$ref"].rsplit("/", 1)[1]]
        return resolved

    original = validator({**schema, "$defs": DEFS})
    flat = flat_json_schema(schema, resolve)
    # a kept (recursive) $ref still needs its definitions
    rewritten = validator({**flat, "$defs": DEFS} if "$ref" in json.dumps(flat) else flat)
    for value in values:
        assert rewritten.is_valid(value) == original.is_valid(value), (flat, value)


def test_flat_json_schema_rewrites_and_leaves_data_alone() -> None:
    def resolve(ref: dict[str, Any]) -> dict[str, Any]:
        resolved: dict[str, Any] = DEFS[ref["$ref"].rsplit("/", 1)[1]]
        return resolved

    schema = {
        "type": "object",
        "title": "Top",
        "properties": {
            "title": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Title"},
            "kind": {"anyOf": [{"$ref": "#/$defs/Kind"}, {"type": "null"}]},
            "point": {"$ref": "#/$defs/Point"},
            "extra": {"type": "object", "additionalProperties": True},
            "fixed": {"default": {"title": "kept", "$ref": "kept"}, "enum": [{"title": 1}]},
        },
    }
    assert flat_json_schema(schema, resolve) == {
        "type": "object",
        "properties": {
            "title": {"type": ["string", "null"]},
            "kind": {"enum": ["a", "b", None], "type": ["string", "null"]},
            "point": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "title": {"type": "string"}},
                "required": ["x"],
            },
            "extra": {"type": "object"},
            "fixed": {"default": {"title": "kept", "$ref": "kept"}, "enum": [{"title": 1}]},
        },
    }
    assert "title" in DEFS["Point"]  # the definitions themselves are not modified
