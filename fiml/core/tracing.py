"""OpenTelemetry spans of a running FIML process: one home for every span it makes.

Four hook points call :func:`start` and end what it returns: the tool boundary
(:func:`fiml.mcp.boundary.tool_boundary`), the store's operation wrapper
(:mod:`fiml.sessions.instrumented`, the outermost operation of a call only), the market
providers' one HTTP request function (:func:`fiml.market._http.fetch`) and the job runner
(:func:`fiml.sessions.jobs.run_job`). Each span is started in the current OTel context and
made current while its work runs, so a store span is a child of its tool span, and a tool
span a child of the MCP SDK's own ``tools/call`` server span (which the SDK makes on the
global tracer provider, joined to a caller's ``traceparent``).

Until :func:`enable_tracing` (or :func:`configure_tracing` finding the standard ``OTEL_*``
variables) :func:`start` returns ``None`` after one global test: a library user, a test, a
CLI command or a server without those variables imports nothing of ``opentelemetry``
through this module. (The MCP SDK itself imports ``opentelemetry-api``, its dependency, when
the server module loads; the SDK proper, ``opentelemetry-sdk``, loads only to export.)

Attributes follow the logs' rule (:mod:`fiml.core.logs`): what the span is about (tool,
operation, backend, provider, job, user id, session id, outcome, an error's class), never
a bearer token, a context value or an error's message, which may quote what a caller sent.
An exception becomes the span's ``error.type``, an ERROR status described by the class
name, and an ``exception`` event with ``exception.type`` (and, for a bug, the stack without
the message), never ``record_exception``, which copies the message.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fiml.core.metrics import outcome_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "JOB_SPAN",
    "PROVIDER_SPAN",
    "STORE_SPAN",
    "TOOL_SPAN",
    "TRACER_NAME",
    "OpenSpan",
    "active",
    "configure_tracing",
    "disable_tracing",
    "enable_tracing",
    "flush_tracing",
    "start",
    "tracing_wanted",
]

logger = logging.getLogger("fiml.tracing")

TRACER_NAME = "fiml-sessions"
"""The instrumentation scope of FIML's spans."""

TOOL_SPAN = "fiml.tool"
STORE_SPAN = "fiml.store"
PROVIDER_SPAN = "fiml.provider"
JOB_SPAN = "fiml.job"
"""Span names are ``<kind> <what>``, e.g. ``fiml.tool search-by-symbol``,
``fiml.store get_session``, ``fiml.provider binance``, ``fiml.job cleanup_expired_sessions``."""

AttributeValue = str | bool | int | float

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_EXPORTERS = frozenset({"otlp", "console"})

_owned_provider: Any = None  # the SDK provider configure_tracing built, to flush


class _On:
    """The tracer, and the OTel API functions the hooks call, looked up once when enabled
    (an import statement in each hook would cost more than the check that skips it)."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, trace

        self.tracer = tracer
        self.attach = context.attach
        self.detach = context.detach
        self.in_context = trace.set_span_in_context
        self.client = trace.SpanKind.CLIENT
        self.internal = trace.SpanKind.INTERNAL
        self.status = trace.Status
        self.error_code = trace.StatusCode.ERROR


_on: _On | None = None


class OpenSpan:
    """A started span, current until :meth:`end` (call it exactly once, in the same task)."""

    __slots__ = ("api", "span", "token")

    def __init__(self, api: _On, span: Span, token: object) -> None:
        self.api = api
        self.span = span
        self.token = token

    def end(
        self,
        error: BaseException | str | None,
        outcome: str,
        attributes: Mapping[str, AttributeValue | None] | None = None,
    ) -> None:
        """Record the outcome and ``error``: an exception's class, never its message (or
        an error type already named, e.g. an HTTP status); end the span and make the
        context before :func:`start` current again."""
        span, api = self.span, self.api
        try:
            span.set_attribute("fiml.outcome", outcome)
            if attributes:
                span.set_attributes({k: v for k, v in attributes.items() if v is not None})
            if isinstance(error, BaseException):
                error_class = type(error).__name__
                event: dict[str, AttributeValue] = {"exception.type": error_class}
                if outcome_of(error) == "internal":  # a bug: where helps; the text may not
                    event["exception.stacktrace"] = "".join(
                        traceback.format_tb(error.__traceback__)
                    )
                span.add_event("exception", event)
                error = error_class
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(api.status(api.error_code, error))
        finally:
            span.end()
            api.detach(self.token)  # type: ignore[arg-type]  # the token attach returned


def active() -> bool:
    """Whether spans are being made (for a hook that skips its bookkeeping without them)."""
    return _on is not None


def start(
    kind: str, what: str, attributes: Mapping[str, AttributeValue | None], *, client: bool = False
) -> OpenSpan | None:
    """A span ``<kind> <what>`` with ``attributes`` (``None`` values left out), a child of
    the current span and current itself until its :meth:`OpenSpan.end`; ``client`` for a
    request to another service. ``None`` when tracing is off."""
    on = _on
    if on is None:
        return None
    span = on.tracer.start_span(
        f"{kind} {what}",
        kind=on.client if client else on.internal,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    return OpenSpan(on, span, on.attach(on.in_context(span)))


def enable_tracing(provider: TracerProvider | None = None) -> None:
    """Make spans from now on, on ``provider`` (default: the global tracer provider, the one
    the MCP SDK uses; an application that set it up calls this to join FIML's spans to it)."""
    global _on
    from opentelemetry import trace

    from fiml import __version__

    source = provider if provider is not None else trace.get_tracer_provider()
    _on = _On(source.get_tracer(TRACER_NAME, __version__))


def disable_tracing() -> None:
    """Make no more spans (:func:`start` returns ``None`` again)."""
    global _on
    _on = None


def tracing_wanted(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The span exporters the standard variables in ``environ`` ask for: those
    ``OTEL_TRACES_EXPORTER`` lists (``otlp``, ``console``: to stderr; ``none`` for none),
    else ``otlp`` when an OTLP endpoint variable is set; none when ``OTEL_SDK_DISABLED``
    is true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    listed = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if listed:
        names = tuple(n.strip() for n in listed.split(",") if n.strip())
        return () if "none" in names else tuple(n for n in names if n in _EXPORTERS)
    return ("otlp",) if any(environ.get(v) for v in _ENDPOINT_VARIABLES) else ()


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Trace this process when the standard ``OTEL_*`` variables ask for it (see
    :func:`tracing_wanted`); whether it is traced. Called by ``fiml serve`` and the Celery
    worker at start; idempotent.

    A global tracer provider set already (by ``opentelemetry-instrument`` or the embedding
    application) is used as it is. Otherwise this builds the SDK's, which reads the other
    standard variables itself (``OTEL_SERVICE_NAME``, default ``fiml-sessions``;
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, and the OTLP
    exporter's endpoint, headers, protocol and timeout), and sets it as the global one, so
    the MCP SDK's spans are exported with FIML's. Without the ``otel`` extra installed,
    a warning says so and the process runs untraced.
    """
    environ = os.environ if environ is None else environ
    if _on is not None:
        return True
    exporters = tracing_wanted(environ)
    if not exporters:
        return False
    try:
        provider = _sdk_provider(environ, exporters)
    except ImportError as exc:
        logger.warning(
            "OTEL_* variables ask for traces, but %s is not installed: "
            "install fiml-sessions[otel] to export them",
            exc.name,
            extra={"event": "tracing.unavailable", "missing": exc.name},
        )
        return False
    enable_tracing(provider)
    return True


def _sdk_provider(environ: Mapping[str, str], exporters: tuple[str, ...]) -> TracerProvider:
    global _owned_provider
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current  # set up by someone else, with its own exporters
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    defaults = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: TRACER_NAME}
    provider = SdkTracerProvider(resource=Resource.create(defaults))
    for name in exporters:
        # The console exporter writes to stderr: stdout belongs to the stdio MCP transport.
        exporter = (
            _otlp_exporter(environ) if name == "otlp" else ConsoleSpanExporter(out=sys.stderr)
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _owned_provider = provider
    return provider


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    """OTLP over HTTP (protobuf, the extra's and the specification's default), or gRPC when
    ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` says ``grpc`` and its exporter is installed."""
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    transport = "grpc" if protocol.strip().lower() == "grpc" else "http"
    module = importlib.import_module(
        f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter"
    )
    return module.OTLPSpanExporter()


def flush_tracing(timeout_millis: int = 5000) -> None:
    """Export the spans still queued by the provider :func:`configure_tracing` built: for
    a process that may end without running its exit hooks (a Celery pool process)."""
    if _owned_provider is not None:
        _owned_provider.force_flush(timeout_millis)
