"""OpenTelemetry spans of tool calls, store operations, provider requests and job runs.

The spans are the SDK's, recorded by its ``InMemorySpanExporter`` from real tool calls over
the MCP SDK's in-memory client, a real store and providers answered by respx in their real
response formats. OTel's global tracer provider can be set once per process: the session
fixture sets it (the MCP SDK makes its own spans on it, which FIML's must join), and each
test turns FIML's spans on and off around itself, recording only meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx
from mcp import Client
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import fiml
from fiml.core.config import Settings
from fiml.core.errors import ProviderUnavailableError
from fiml.core.tracing import disable_tracing, enable_tracing, tracing_wanted
from fiml.market import BINANCE_TICKER_URL, BinanceProvider
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.sessions.jobs import CLEANUP_JOB, Job, JobStats, run_job, session_jobs
from fiml.sessions.store import SessionStore
from tests.conftest import sqlite_url
from tests.mcp.conftest import fails, new_session, ok

SOURCE = Path(fiml.__file__).resolve().parent.parent
FIXTURES = SOURCE / "tests" / "market" / "fixtures"
SECRET = "s3cr3t-context-value-7f1c"
"""A context value no span may carry."""


class _WhileRecording(SimpleSpanProcessor):
    """Exports spans only while a test of this module runs: the global provider stays set
    for the rest of the suite, whose tool calls make the MCP SDK's spans on it."""

    recording = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            super().on_end(span)


@pytest.fixture(scope="session")
def provider_and_exporter() -> tuple[TracerProvider, InMemorySpanExporter, _WhileRecording]:
    exporter = InMemorySpanExporter()
    processor = _WhileRecording(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider, exporter, processor


@pytest.fixture
def spans(
    provider_and_exporter: tuple[TracerProvider, InMemorySpanExporter, _WhileRecording],
) -> Iterator[InMemorySpanExporter]:
    """FIML's spans (and the MCP SDK's) on, recorded for this test only."""
    provider, exporter, processor = provider_and_exporter
    assert trace.get_tracer_provider() is provider, "another global tracer provider was set"
    exporter.clear()
    processor.recording = True
    enable_tracing(provider)
    yield exporter
    disable_tracing()
    processor.recording = False
    exporter.clear()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = named(exporter, name)
    return span


def parent_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None and parent.context is not None
    return bool(child.parent.span_id == parent.context.span_id)


def everything_said(span: ReadableSpan) -> str:
    """A span's name, attributes, status and events, as one text to search."""
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    said = [span.name, dict(span.attributes or {}), span.status.description, events]
    return json.dumps(said, default=str)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SessionStore]:
    async with SessionStore(Settings(database_url=sqlite_url(tmp_path), redis_url=None)) as s:
        yield s


def client_of(store: SessionStore, market: MarketData, user: str = "alice") -> Client:
    return Client(build_server(store=store, market=market, identity=StaticIdentity(Identity(user))))


async def test_a_tool_call_is_a_span_under_the_sdks_with_its_store_operation_under_it(
    sqlite_store: SessionStore, spans: InMemorySpanExporter
) -> None:
    async with MarketData.offline() as market, client_of(sqlite_store, market) as client:
        sid = await new_session(client)
        await ok(client, "get-session-info", session_id=sid)

    sdk = one(spans, "tools/call get-session-info")
    tool = one(spans, "fiml.tool get-session-info")
    store = one(spans, "fiml.store get_user_session")
    assert sdk.kind == SpanKind.SERVER
    assert parent_of(tool, sdk) and parent_of(store, tool)
    assert dict(tool.attributes or {}) == {
        "fiml.tool": "get-session-info",
        "fiml.outcome": "ok",
        "fiml.user_id": "alice",
        "fiml.session_id": sid,
    }
    assert dict(store.attributes or {}) == {
        "fiml.store.operation": "get_user_session",
        "fiml.store.backend": "sqlite",
        "fiml.outcome": "ok",
    }
    assert tool.status.status_code == StatusCode.UNSET
    created = one(spans, "fiml.tool create-analysis-session")
    assert "fiml.session_id" not in (created.attributes or {})  # no session id argument
    assert parent_of(one(spans, "fiml.store create_session"), created)


async def test_only_the_outermost_store_operation_is_a_span(
    sqlite_store: SessionStore, spans: InMemorySpanExporter
) -> None:
    """Closing reads the session back; that read is part of closing."""
    session = await sqlite_store.create_session(["AAPL"], "equity", user_id="alice")
    spans.clear()
    await sqlite_store.close_session(session.id)
    assert [s.name for s in spans.get_finished_spans()] == ["fiml.store close_session"]


async def test_each_deployment_names_its_backend(
    store: SessionStore, store_kind: str, spans: InMemorySpanExporter
) -> None:
    await store.create_session(["AAPL"], "equity", user_id="alice")
    backend = one(spans, "fiml.store create_session").attributes or {}
    assert backend["fiml.store.backend"] == store_kind.replace("postgres", "postgresql")


async def test_a_refused_call_is_an_error_named_by_its_class_only(
    sqlite_store: SessionStore, spans: InMemorySpanExporter
) -> None:
    async with MarketData.offline() as market, client_of(sqlite_store, market) as client:
        sid = await new_session(client)
        message = await fails(client, "extend-session", session_id=sid, hours=-1)

    tool = one(spans, "fiml.tool extend-session")
    attributes = tool.attributes or {}
    assert attributes["fiml.outcome"] == "refused"
    error_class = attributes["error.type"]
    assert isinstance(error_class, str) and error_class.endswith("Error")
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == error_class
    [event] = tool.events
    assert (event.name, dict(event.attributes or {})) == (
        "exception",
        {"exception.type": error_class},
    )
    assert message not in everything_said(tool)


async def test_a_bug_carries_its_stack_but_not_its_message(
    sqlite_store: SessionStore, spans: InMemorySpanExporter
) -> None:
    async def broken() -> JobStats:
        raise RuntimeError(f"found {SECRET} in a row")

    with pytest.raises(RuntimeError):
        await run_job(Job("broken", timedelta(hours=1), broken))

    job = one(spans, "fiml.job broken")
    assert job.status.status_code == StatusCode.ERROR
    assert job.status.description == "RuntimeError"
    assert (job.attributes or {})["fiml.outcome"] == "failed"
    [event] = job.events
    assert "broken" in str((event.attributes or {})["exception.stacktrace"])  # the frame
    assert SECRET not in everything_said(job)


async def test_no_context_value_reaches_any_span(
    sqlite_store: SessionStore, spans: InMemorySpanExporter
) -> None:
    async with MarketData.offline() as market, client_of(sqlite_store, market) as client:
        sid = await new_session(client)
        context = {"thesis": SECRET, "levels": [SECRET]}
        await ok(client, "update-session-context", session_id=sid, context=context)
        await ok(client, "get-session-info", session_id=sid)
        await fails(
            client, "update-session-context", session_id=sid, context={"thesis": SECRET + "\x00"}
        )
        await fails(client, "update-session-context", session_id=SECRET, context=context)
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} >= {
        "tools/call update-session-context",
        "fiml.tool update-session-context",
        "fiml.store update_state",
    }
    for span in finished:
        assert SECRET not in everything_said(span), span.name


async def test_a_live_provider_request_is_a_client_span_under_its_tool_call(
    sqlite_store: SessionStore, spans: InMemorySpanExporter
) -> None:
    ticker = json.loads((FIXTURES / "binance_ticker_24hr_btcusdt.json").read_text())
    with respx.mock(assert_all_mocked=True) as http:
        http.get(BINANCE_TICKER_URL, params={"symbol": "BTCUSDT"}).respond(200, json=ticker)
        async with MarketData.live() as market, client_of(sqlite_store, market) as client:
            sid = await new_session(client, "BTC", session_type="crypto")
            await ok(client, "search-by-coin", symbol="BTC", session_id=sid)

    tool = one(spans, "fiml.tool search-by-coin")
    request = one(spans, "fiml.provider binance")
    assert parent_of(request, tool)
    assert request.kind == SpanKind.CLIENT
    assert dict(request.attributes or {}) == {
        "fiml.provider": "binance",
        "http.request.method": "GET",
        "server.address": "api.binance.com",
        "http.response.status_code": 200,
        "fiml.outcome": "ok",
    }
    assert parent_of(one(spans, "fiml.store append_query"), tool)


async def test_an_error_status_and_an_unreachable_provider_are_failed_requests(
    spans: InMemorySpanExporter,
) -> None:
    binance = BinanceProvider(timeout=1)
    with respx.mock(assert_all_mocked=True) as http:
        route = http.get(BINANCE_TICKER_URL, params={"symbol": "BTCUSDT"})
        route.respond(429, json={"code": -1003, "msg": "Too many requests"})
        with pytest.raises(ProviderUnavailableError):
            await binance.get_quote("BTC")
        route.side_effect = httpx.ConnectTimeout("timed out")
        with pytest.raises(ProviderUnavailableError):
            await binance.get_quote("BTC")
    await binance.aclose()

    limited, unreachable = named(spans, "fiml.provider binance")
    assert (limited.attributes or {})["http.response.status_code"] == 429
    assert (limited.attributes or {})["error.type"] == "429"
    assert (limited.attributes or {})["fiml.outcome"] == "http_error"
    assert unreachable.status.description == "ProviderUnavailableError"
    assert (unreachable.attributes or {})["fiml.outcome"] == "unavailable"
    assert "http.response.status_code" not in (unreachable.attributes or {})
    for span in (limited, unreachable):
        assert span.status.status_code == StatusCode.ERROR


async def test_a_job_run_is_a_span_with_its_counts_and_its_store_operation(
    store: SessionStore, spans: InMemorySpanExporter
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="alice")
    await store.close_session(session.id)
    [cleanup] = [j for j in session_jobs(store) if j.name == CLEANUP_JOB]
    await run_job(cleanup)

    job = one(spans, f"fiml.job {CLEANUP_JOB}")
    attributes = dict(job.attributes or {})
    assert attributes["fiml.job"] == CLEANUP_JOB
    assert attributes["fiml.outcome"] == "ok"
    assert attributes["fiml.job.archived"] == 1
    assert attributes["fiml.job.failed"] == 0
    assert job.parent is None  # a run is a trace of its own
    assert parent_of(one(spans, "fiml.store cleanup_expired_sessions"), job)


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
    ],
)
def test_the_standard_variables_decide_what_is_exported(
    environ: dict[str, str], wanted: tuple[str, ...]
) -> None:
    assert tracing_wanted(environ) == wanted


def python(code: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter without OTEL_* variables but ``environ``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env = {**clean, **environ, "PYTHONPATH": str(SOURCE)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


def run_python(code: str, **environ: str) -> list[str]:
    """The lines :func:`python` printed."""
    return python(code, **environ).stdout.splitlines()


STORE_WORK = """
import asyncio, sys
from fiml.core.config import Settings
from fiml.core.tracing import configure_tracing, flush_tracing
from fiml.sessions.jobs import run_job, session_jobs
from fiml.sessions.store import SessionStore

async def work():
    settings = Settings(database_url=sys.argv[1] if len(sys.argv) > 1 else {url!r})
    async with SessionStore(settings) as store:
        await store.create_session(["AAPL"], "equity", user_id="alice")
        for job in session_jobs(store):
            await run_job(job)

print(configure_tracing())
asyncio.run(work())
flush_tracing()
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""


def test_without_the_variables_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    traced, modules = run_python(STORE_WORK.format(url=sqlite_url(tmp_path)))
    assert (traced, modules) == ("False", "[]")


def test_a_tool_call_without_the_variables_loads_no_opentelemetry_sdk(tmp_path: Path) -> None:
    """The MCP SDK imports opentelemetry-api itself; the SDK proper stays out."""
    code = f"""
import asyncio, sys
from fiml.core.config import Settings
from fiml.core.tracing import configure_tracing
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.sessions.store import SessionStore
from mcp import Client

async def work():
    settings = Settings(database_url={sqlite_url(tmp_path)!r})
    async with SessionStore(settings) as store, MarketData.offline() as market:
        server = build_server(store=store, market=market, identity=StaticIdentity(Identity("a")))
        async with Client(server) as client:
            await client.call_tool("list-sessions", {{}})

print(configure_tracing())
asyncio.run(work())
print(any(m.startswith("opentelemetry.sdk") for m in sys.modules))
"""
    assert run_python(code) == ["False", "False"]


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it receives."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    _Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Collector.received
    server.shutdown()
    server.server_close()


def test_with_an_endpoint_the_spans_are_exported_over_otlp(
    tmp_path: Path, collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    endpoint, received = collector
    traced, _modules = run_python(
        STORE_WORK.format(url=sqlite_url(tmp_path)), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint
    )
    assert traced == "True"
    exported: list[str] = []
    services: set[str] = set()
    for path, body in received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource_spans.scope_spans:
                exported += [span.name for span in scope.spans]
    assert services == {"fiml-sessions"}
    assert "fiml.store create_session" in exported
    assert f"fiml.job {CLEANUP_JOB}" in exported


def test_without_the_extra_the_variables_leave_the_process_untraced_with_a_warning() -> None:
    """``None`` in ``sys.modules`` makes the import fail as a missing package does."""
    code = """
import sys
sys.modules["opentelemetry.sdk"] = None
from fiml.core.tracing import active, configure_tracing
print(configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}), active())
"""
    done = python(code)
    assert done.stdout.split() == ["False", "False"]
    assert "install fiml-sessions[otel]" in done.stderr
