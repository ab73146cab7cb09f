"""No bearer token and no context value ever reaches a log record, at DEBUG, on any store.

The server runs its normal paths, its refusals and two unexpected failures whose exception
text quotes the context value, over in-memory clients and over HTTP with bearer tokens;
every record every logger emits (message, arguments, exception and stack) is searched.
"""

from __future__ import annotations

import functools
import json
import logging
import traceback
from pathlib import Path
from typing import Any

import anyio
import pytest

from fiml.sessions.jobs import run_cleanup
from tests.conftest import STORE_KINDS, settings_for
from tests.fuzz.harness import Harness, assert_valid_result, error_message, harness_for

SECRET = "zebra-thesis-7731-context"
"""A context value distinctive enough that finding it anywhere in a log is a leak."""


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write out for ``record``."""
    parts = [record.getMessage(), str(record.msg), repr(record.args), repr(vars(record))]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def call_http(harness: Harness, tool: str, arguments: dict[str, Any], user: str = "alice") -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    body["params"] = {"name": tool, "arguments": arguments}
    return harness.post(json.dumps(body).encode(), user).json()


def exercise(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path a context value or a token takes; returns what the clients saw."""
    seen: list[str] = []
    sid = harness.new_session()
    context = {"session_id": sid, "context": {"note": SECRET}}
    for outcome in (
        harness.call("update-session-context", context),
        harness.call("get-session-info", {"session_id": sid}),
        harness.call("search-by-symbol", {"symbol": "AAPL", "session_id": sid}),
        harness.call("update-session-context", {**context, "context": {"n": SECRET * 3000}}),
        harness.call("update-session-context", {**context, "context": {"n": [SECRET, "\ud800"]}}),
        harness.call("update-session-context", {**context, "context": SECRET}),
        harness.call("update-session-context", {**context, "preferences": {"p": [SECRET] * 9}}),
        harness.call("get-session-info", {"session_id": sid}, "bob"),
    ):
        seen.append(outcome.model_dump_json())
    resource = harness.read(f"session://{sid}")
    seen.append(str(resource))

    seen.append(json.dumps(call_http(harness, "get-session-info", {"session_id": sid})))
    seen.append(json.dumps(call_http(harness, "update-session-context", context, "bob")))
    raw = (
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"update-session-context",'
        f'"arguments":{{"session_id":"{sid}","context":{{"n":["{SECRET}",NaN]}}}}}}}}'
    )
    seen.append(harness.post(raw.encode()).text)
    seen.append(str(harness.post(b"{}", token=f"Bearer-{SECRET}").status_code))
    seen.append(str(harness.post(b"{}", token=harness.served.tokens["alice"][:-2]).status_code))

    store = harness.served.store

    async def failing_write(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(
            f"driver rejected parameters ({SECRET}, {harness.served.tokens['alice']})"
        )

    async def failing_read(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"driver returned garbage near {SECRET}")

    with monkeypatch.context() as patched:
        patched.setattr(store, "update_state", failing_write)
        crashed = harness.call("update-session-context", context)
        assert "internal error (incident" in crashed.model_dump_json()
        patched.setattr(store, "get_user_session", failing_read)  # what the resource reads
        crashed_resource = harness.read(f"session://{sid}")
        assert "internal error (incident" in str(crashed_resource)

    harness.call("close-analysis-session", {"session_id": sid})
    harness.run(run_cleanup, store)
    assert_valid_result(
        harness.call("get-session-analytics", {}), harness.tools["get-session-analytics"]
    )
    return seen


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_no_token_and_no_context_value_in_any_log_record(
    kind: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = anyio.run(functools.partial(settings_for, market_provider="offline"), kind, tmp_path)

    with harness_for(settings) as harness:
        seen = exercise(harness, monkeypatch)
        tokens = list(harness.served.tokens.values())

    assert any(SECRET in text for text in seen), "the value never reached a client"
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) > 0, "DEBUG was not captured"
    assert any(r.name == "fiml.mcp" and r.levelno == logging.ERROR for r in caplog.records)
    for record in caplog.records:
        text = record_text(record)
        assert SECRET not in text, f"{record.name} logged a context value: {text[:300]}"
        for token in tokens:
            assert token not in text and token[:16] not in text, f"{record.name} logged a token"


def test_a_refusal_names_the_field_but_not_the_value(harness: Harness) -> None:
    """The agent's own value is not echoed back either: a message names the field and why."""
    sid = harness.new_session()

    refused = harness.call(
        "update-session-context", {"session_id": sid, "context": {"n": SECRET * 3000}}
    )

    message = error_message(refused)
    assert message.endswith("invalid context['n']: 75002 bytes of JSON, above the 65536 limit")
    assert SECRET not in message
