"""Log records with an event name and fields, written as JSON or as readable text.

Every record FIML emits about something an operator may count or alert on carries
``extra={"event": <name>, <field>: <value>, ...}``: ``tool.call``, ``tool.refused``,
``storage.unavailable``, ``tool.failed``, ``job.run``, ``job.failed``, ``cleanup.done``,
``archival.failed``, ``session.quarantined`` (docs/OPERATIONS.md lists their fields).
:func:`configure_logging` sets up the root logger: ``FIML_LOG_FORMAT=json`` writes one JSON
object per line with the event's fields; the default, text, writes the message and then
the fields as ``key=value``.

The fields are what the event is about (user, tool, session id, outcome, duration, counts,
an error's class), never a bearer token, a context value or an error's message, which may
quote what a caller sent.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "CALLS_LOGGER",
    "LOG_FORMATS",
    "EventFormatter",
    "JsonFormatter",
    "LogFormat",
    "configure_logging",
    "event_fields",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# What every LogRecord has; the rest of a record's attributes came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through ``extra`` (its event name among them)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the event's fields, and the
    exception's class and stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **event_fields(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            data["exception"] = record.exc_info[0].__name__
            data["stack"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class EventFormatter(logging.Formatter):
    """The usual ``time level logger: message`` line, then the event's fields as
    ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = event_fields(record)
        if not fields:
            return line
        shown = " ".join(f"{k}={_shown(v)}" for k, v in fields.items())
        first, newline, rest = line.partition("\n")
        return f"{first} [{shown}]{newline}{rest}"


_NEEDS_QUOTES = re.compile(r'[\s"=\[\]]')


def _shown(value: Any) -> str:
    """A field's value in a text line, quoted when it is empty or holds a separator."""
    text = str(value)
    return json.dumps(text) if not text or _NEEDS_QUOTES.search(text) else text


CALLS_LOGGER = "fiml.calls"
"""The logger of the per-call records (:mod:`fiml.mcp.observed`)."""


def configure_logging(
    log_format: LogFormat = "text",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    tool_calls: bool = True,
) -> None:
    """Send every record at ``level`` and above to ``stream`` (stderr: stdout belongs to the
    stdio MCP transport) in ``log_format``; without ``tool_calls``, the per-call records
    below ERROR are dropped (by their logger's level, before they are made).

    Like :func:`logging.basicConfig`, the handler is not added when the root logger has
    handlers already: an application that embeds the server, or a test runner, keeps its
    own.
    """
    if not tool_calls:
        logging.getLogger(CALLS_LOGGER).setLevel(logging.ERROR)
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else EventFormatter())
    root.addHandler(handler)
    root.setLevel(level)
