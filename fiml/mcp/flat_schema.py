"""The flat JSON schema the MCP tools' results publish, and why they publish one.

:class:`ResultModel` publishes :func:`flat_json_schema` of pydantic's own schema: the
same values pass, but with every ``$ref`` inlined, ``X | None`` as
``"type": [..., "null"]`` rather than ``anyOf``, and no keyword that cannot fail (the
generated ``title`` annotations, ``additionalProperties: true``).

Why not pydantic's schema as generated: the SDK's client checks every structured result
against the tool's ``outputSchema`` with jsonschema, where each ``$ref`` is a registry
lookup and each nullable field an ``anyOf`` that builds an error for the branch that
fails. Measured with the SDK's own clients, interleaved, p50 (issue 14), flat against
pydantic's schema: the check of a ``get-session-info`` result (20 recent queries) takes
2.2 against 3.6 ms, of ``list-sessions`` (20 sessions) 3.0 against 4.7 ms, of a tracked
``search-by-symbol`` (10 recent queries) 1.3 against 2.1 ms. That is 14%, 16% and 6% of
the whole call in memory, and 16%, 12% and 7% over stdio (``get-session-info``: 15.2
against 18.1 ms); the ``mcp`` section of benchmarks/RESULTS.md has the quiet-machine
figure, 0.42 ms of a 4.3 ms call over stdio. ``tools/list`` is also 20% smaller
(25.6 against 32.0 kB). The hook is pydantic's public way to publish a schema of one's
own (``__get_pydantic_json_schema__``); the MCP SDK has no way to pass one to a tool.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextvars import ContextVar

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = ["ResultModel", "flat_json_schema", "pydantic_json_schema"]

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
        generated = handler(core_schema)
        if not _FLATTEN.get():
            return generated
        return flat_json_schema(generated, handler.resolve_ref_schema)


_FLATTEN: ContextVar[bool] = ContextVar("flatten_result_schemas", default=True)


def pydantic_json_schema(model: type[BaseModel]) -> JsonSchemaValue:
    """pydantic's own JSON schema of ``model``: what the tools would publish unflattened.

    For comparisons (tests, benchmarks).
    """
    token = _FLATTEN.set(False)
    try:
        return model.model_json_schema()
    finally:
        _FLATTEN.reset(token)
