"""Structured log records: one per tool call and per job run, as JSON or as text.

The records come from real tool calls over the SDK's in-memory client on a SQLite store.
That no token and no context value reaches any record is tests/security/test_logs.py's to
check (it reads every record of every logger, these included).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from fiml.core.config import Settings
from fiml.core.logs import CALLS_LOGGER, EventFormatter, JsonFormatter, configure_logging
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.sessions.jobs import run_job, session_jobs
from fiml.sessions.store import SessionStore
from tests.conftest import sqlite_url
from tests.mcp.conftest import fails, new_session, ok


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger writing JSON into a buffer (as FIML_LOG_FORMAT=json does)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    root.handlers.clear()  # the test runner's own: configure_logging would leave them be
    buffer = io.StringIO()
    configure_logging("json", stream=buffer)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


async def test_each_tool_call_is_one_json_record(tmp_path: Path, json_log: io.StringIO) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), redis_url=None)
    async with SessionStore(settings) as store, MarketData.offline() as market:
        server = build_server(store=store, market=market, identity=StaticIdentity(Identity("al")))
        async with Client(server) as client:
            sid = await new_session(client)
            await ok(client, "search-by-symbol", symbol="AAPL", session_id=sid)
            await fails(client, "extend-session", session_id=sid, hours=-1)
    calls = [r for r in records(json_log) if r.get("tool") and r["logger"] == CALLS_LOGGER]
    assert [(r["tool"], r["event"], r["outcome"], r["level"]) for r in calls] == [
        ("create-analysis-session", "tool.call", "ok", "INFO"),
        ("search-by-symbol", "tool.call", "ok", "INFO"),
        ("extend-session", "tool.refused", "refused", "INFO"),
    ]
    assert {r["user"] for r in calls} == {"al"}
    assert [r["session_id"] for r in calls] == [None, sid, sid]
    assert calls[2]["error"] == "InvalidTTLError"
    assert all(r["duration_ms"] >= 0 for r in calls)


async def test_each_job_run_is_one_record(tmp_path: Path, json_log: io.StringIO) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), redis_url=None)
    async with SessionStore(settings) as store:
        for job in session_jobs(store):
            await run_job(job)
    runs = [r for r in records(json_log) if r.get("event") == "job.run"]
    assert [(r["job"], r["outcome"]) for r in runs] == [
        ("cleanup_expired_sessions", "ok"),
        ("delete_old_archived_sessions", "ok"),
        ("generate_session_metrics", "ok"),
    ]
    assert runs[0]["archived"] == 0 and runs[1]["deleted"] == 0


def record(**extra: Any) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "fiml.calls", "levelno": 20, "levelname": "INFO"})
    made.msg = "search-by-symbol ok"
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_text_lines_carry_the_fields_after_the_message() -> None:
    line = EventFormatter().format(record(event="tool.call", user="al", note="two words"))
    assert line.endswith(
        'fiml.calls: search-by-symbol ok [event=tool.call user=al note="two words"]'
    )


def test_an_applications_own_handlers_are_left_as_they_are() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    assert before  # the test runner's
    configure_logging("json", stream=io.StringIO())
    assert root.handlers == before


def test_a_record_without_fields_is_the_usual_line() -> None:
    line = EventFormatter().format(record())
    assert line.endswith("INFO fiml.calls: search-by-symbol ok")


def test_json_records_name_the_exception_class_and_stack() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        made = record(event="x")
        made.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(made))
    assert data["exception"] == "KeyError" and "Traceback" in data["stack"]
    assert (data["event"], data["logger"], data["level"]) == ("x", "fiml.calls", "INFO")


def test_per_call_records_can_be_turned_off_but_errors_stay() -> None:
    calls = logging.getLogger(CALLS_LOGGER)
    level = calls.level
    try:
        configure_logging(tool_calls=False)
        assert not calls.isEnabledFor(logging.INFO)
        assert calls.isEnabledFor(logging.ERROR)
    finally:
        calls.setLevel(level)
