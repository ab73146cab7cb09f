"""Raw JSON-RPC over streamable HTTP: what the SDK's client would never send.

NaN and Infinity literals, numbers past every float and past Python's 4,300-digit limit,
lone surrogate escapes, 10,000-deep nesting, invalid UTF-8, duplicate keys and bodies that
are not JSON-RPC at all, in every argument of every tool, sent with a valid bearer token.
The server answers each with a JSON-RPC error or a tool result (an ``isError`` with a
readable message, or output matching the schema), never a 5xx; a refused call changes
nothing, and the server serves normally afterwards.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from mcp.types import CallToolResult

from tests.fuzz.harness import (
    Harness,
    assert_readable,
    assert_valid_result,
    error_message,
)
from tests.fuzz.strategies import EXAMPLES, FUZZ, TOOLS, small_values, weighted

DEEP = 10_000
LITERALS = {
    "nan": "NaN",
    "infinity": "Infinity",
    "-infinity": "-Infinity",
    "float-overflow": "1e400",
    "float-underflow": "1e-400",
    "negative-zero": "-0.0",
    "int-400-digits": "1" + "0" * 400,
    "int-5000-digits": "9" * 5000,
    "int-past-64-bits": str(2**64 + 1),
    "lone-surrogate": '"\\ud800"',
    "reversed-surrogates": '"\\udc00\\ud800"',
    "nul": '"\\u0000"',
    "rtl-zero-width": '"\\u202eAAPL\\u200b"',
    "deep-list": "[" * DEEP + "1" + "]" * DEEP,
    "deep-object": '{"k":' * DEEP + "1" + "}" * DEEP,
    "megabyte-string": json.dumps("x" * 1_000_000),
    "huge-list": "[" + ",".join(['"AAPL"'] * 100_000) + "]",
    "empty-list": "[]",
    "empty-object": "{}",
}
PARAMETERS = {
    "create-analysis-session": ["assets", "session_type", "ttl_hours", "tags", "template"],
    "get-session-info": ["session_id"],
    "list-sessions": ["include_archived", "limit", "cursor"],
    "search-sessions": ["asset", "text", "since", "limit", "cursor"],
    "extend-session": ["session_id", "hours"],
    "close-analysis-session": ["session_id"],
    "get-session-history": ["session_id", "offset", "limit"],
    "update-session-context": ["session_id", "context", "preferences", "remove_context"],
    "search-by-symbol": ["symbol", "market", "session_id"],
    "search-by-coin": ["symbol", "pair", "session_id"],
    "get-session-analytics": ["session_type", "days", "user_id", "all_users"],
    "share-session": ["session_id", "user_id"],
    "unshare-session": ["session_id", "user_id"],
    "list-shared-sessions": ["limit", "cursor"],
    "save-session-template": [
        "name",
        "assets",
        "session_type",
        "tags",
        "ttl_hours",
        "preferences",
    ],
    "list-session-templates": ["limit", "cursor"],
    "get-session-timeline": ["session_id", "limit", "cursor"],
    "fork-session": ["session_id", "after_queries", "at"],
}
BODIES = {
    "not-json": b"not json",
    "empty": b"",
    "invalid-utf8": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\xff\xfe"}}',
    "json-array": b"[]",
    "no-method": b'{"jsonrpc":"2.0","id":1}',
    "unknown-method": b'{"jsonrpc":"2.0","id":1,"method":"sessions/drop","params":{}}',
    "params-not-object": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}',
    "arguments-not-object": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"get-session-info","arguments":"x"}}'
    ),
    "unknown-tool": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop-all","arguments":{}}}'
    ),
    "deep-body": b"[" * DEEP + b"]" * DEEP,
    "id-object": b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}',
}


BIG_INTS = {"int-400-digits", "int-5000-digits", "int-past-64-bits"}
KNOWN_BUGS = {("get-session-history", "offset"): BIG_INTS}
"""Reported, not yet fixed (see tests/fuzz/test_limits.py, strict xfail): an offset past
the database's 64-bit integers is sent to SQL unchecked and fails as an internal error."""


def tool_call(tool: str, arguments: str) -> bytes:
    """A tools/call request whose arguments object is given as raw JSON text."""
    head = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":%s,"arguments":'
    return (head % json.dumps(tool) + arguments + "}}").encode()


def valid_arguments(harness: Harness, tool: str) -> dict[str, str]:
    """Arguments that make a normal call of ``tool``, each as raw JSON text."""
    sid = json.dumps(harness.new_session())
    plain = {
        "assets": '["AAPL"]',
        "session_type": '"equity"',
        "session_id": sid,
        "hours": "1",
        "context": '{"k": 1}',
        "symbol": '"AAPL"' if tool != "search-by-coin" else '"BTC"',
        "name": '"watch"',
    }
    if tool in {"share-session", "unshare-session"}:
        plain["user_id"] = '"bob"'  # the reader (get-session-analytics' user_id is optional)
    return {name: plain[name] for name in PARAMETERS[tool] if name in plain}


def check_answer(harness: Harness, tool: str, body: bytes, before: Any) -> str:
    """POST ``body``; the answer must be a clear error or a valid result. Returns its kind."""
    response = harness.post(body)
    assert response.status_code < 500, response.text[:500]
    if not response.content:
        # Taken for a notification (no usable id): accepted, nothing to answer.
        assert response.status_code == 202, response.status_code
        assert harness.state() == before
        return "notification"
    if "json" not in response.headers.get("content-type", ""):
        # Refused by the HTTP layer (body too large, ...): a status and a line of text.
        assert 400 <= response.status_code < 500, response.status_code
        assert len(response.text) < 200 and "Traceback" not in response.text
        assert harness.state() == before
        return f"http {response.status_code}"
    answer = response.json()
    if "error" in answer:
        assert_readable(answer["error"]["message"])
        assert harness.state() == before
        return f"json-rpc error {answer['error']['code']}"
    result = CallToolResult.model_validate(answer["result"])
    if result.is_error:
        error_message(result)
        assert harness.state() == before, "a refused call changed the store"
        return "isError"
    assert_valid_result(result, harness.tools[tool])
    return "result"


@pytest.mark.parametrize("tool", TOOLS)
def test_every_hostile_literal_in_every_argument(harness: Harness, tool: str) -> None:
    for parameter in PARAMETERS[tool]:
        for name, literal in LITERALS.items():
            if name in KNOWN_BUGS.get((tool, parameter), set()):
                continue
            arguments = {**valid_arguments(harness, tool), parameter: literal}
            text = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in arguments.items()) + "}"

            check_answer(harness, tool, tool_call(tool, text), harness.state())
        harness.assert_serving()


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_bodies_that_are_not_a_tool_call(harness: Harness, body: bytes) -> None:
    check_answer(harness, "get-session-info", body, harness.state())
    harness.assert_serving()


def test_duplicate_keys_do_not_smuggle_a_foreign_session(harness: Harness) -> None:
    own, foreign = harness.session("own"), harness.session("foreign")
    for first, second in ((own, foreign), (foreign, own)):
        body = tool_call("get-session-info", f'{{"session_id":"{first}","session_id":"{second}"}}')

        answer = harness.post(body).json()

        result = CallToolResult.model_validate(answer["result"])
        if second == foreign:
            assert error_message(result).endswith(f"session {foreign} not found")
        else:
            assert not result.is_error


Fragment = tuple[str, Any]
"""Raw JSON as a small tree: ``("literal", name)``, ``("json", value)``, ``("list", [...])``,
``("object", [(key, fragment), ...])``; named literals keep failing examples short."""

fragments: st.SearchStrategy[Fragment] = st.recursive(
    weighted(
        (3, st.sampled_from(sorted(LITERALS)).map(lambda name: ("literal", name))),
        (2, small_values.map(lambda value: ("json", value))),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: ("list", items)),
        st.lists(st.tuples(st.text(max_size=8), children), max_size=3).map(
            lambda pairs: ("object", pairs)
        ),
    ),
    max_leaves=4,
)


def render(fragment: Fragment) -> str:
    """The raw JSON text of a fragment."""
    kind, content = fragment
    if kind == "literal":
        return LITERALS[content]
    if kind == "json":
        return json.dumps(content, allow_nan=True)
    if kind == "list":
        return "[" + ",".join(render(item) for item in content) + "]"
    return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in content) + "}"


@pytest.mark.parametrize("tool", TOOLS)
@settings(parent=FUZZ, max_examples=max(EXAMPLES // 3, 5))
@given(data=st.data())
def test_raw_json_arguments_get_a_clear_answer(
    harness: Harness, tool: str, data: st.DataObject
) -> None:
    arguments = valid_arguments(harness, tool)
    for name in PARAMETERS[tool] + ["unexpected"]:
        if (tool, name) in KNOWN_BUGS:
            continue
        if data.draw(st.booleans(), label=f"replace {name}"):
            arguments[name] = render(data.draw(fragments, label=name))
    text = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in arguments.items()) + "}"
    before = harness.state()

    event(check_answer(harness, tool, tool_call(tool, text), before))
    harness.assert_serving()
