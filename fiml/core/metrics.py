"""Prometheus metrics of a running FIML process: one home for every series it exports.

(Not to be confused with :mod:`fiml.sessions.metrics`, the analytics facts recorded about
finished sessions in the archive database.)

The rest of the package reports events to :func:`recorder` (a session created, a tool call
answered, a store operation done, a cleanup run...). Until :func:`enable_metrics` is called
that is a :class:`Recorder` whose methods do nothing, so a library user, a test or a CLI
command pays nothing and never imports ``prometheus_client``; ``fiml serve`` and a Celery
worker with a metrics port enable it at start. :class:`PrometheusRecorder` then counts into
``prometheus_client`` series, and :func:`exposition` renders them with the active-session
gauge, read from the store at scrape time so that every process reports the same figure.

Several processes: when ``PROMETHEUS_MULTIPROC_DIR`` names a directory (the client
library's multiprocess mode), every process writes its counters and histograms there, and
any one of them serves the totals of all (what a scrape of ``/metrics`` on a load-balanced
HTTP server or of a worker's port must show). Without it, each process serves its own
series, and Prometheus tells them apart by their scrape target (``instance``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "ACTIVE_SESSIONS",
    "HISTOGRAMS",
    "METRIC_LABELS",
    "METRIC_NAMES",
    "MULTIPROC_ENV",
    "UNKNOWN_TYPE",
    "PrometheusRecorder",
    "Recorder",
    "disable_metrics",
    "enable_metrics",
    "exposition",
    "outcome_of",
    "recorder",
    "serve_in_thread",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The client library's switch to multiprocess mode (a directory shared by the processes)."""

ACTIVE_SESSIONS = "fiml_sessions_active_total"
"""The gauge read from the store at scrape time (the original implementation's name)."""

UNKNOWN_TYPE = "unknown"
"""The ``session_type`` of sessions archived in place (see
:meth:`Recorder.sessions_archived_in_place`)."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)

# name -> (kind, help, labels); the one list of what FIML exports besides the gauge.
_SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "fiml_sessions_created_total": ("counter", "Sessions created.", ("session_type",)),
    "fiml_sessions_closed_total": ("counter", "Sessions closed by their user.", ("session_type",)),
    "fiml_sessions_expired_total": (
        "counter",
        "Sessions archived that had expired without being closed.",
        ("session_type",),
    ),
    "fiml_sessions_archived_total": ("counter", "Sessions archived.", ("session_type",)),
    "fiml_sessions_abandoned_total": (
        "counter",
        "Sessions archived that expired unclosed after fewer than two queries.",
        ("session_type",),
    ),
    "fiml_sessions_quarantined_total": (
        "counter",
        "Times archival quarantined a session (each cleanup that meets it again counts).",
        (),
    ),
    "fiml_session_duration_seconds": (
        "histogram",
        "Lifetime of archived sessions, from creation to closing or expiry.",
        ("session_type",),
    ),
    "fiml_session_queries_total": (
        "counter",
        "Queries tracked in sessions (a retried request id counts once).",
        ("session_type", "query_type", "cache_hit"),
    ),
    "fiml_tool_calls_total": ("counter", "MCP tool calls answered.", ("tool", "outcome")),
    "fiml_tool_call_duration_seconds": (
        "histogram",
        "Time from a tool call's arguments to its answer.",
        ("tool",),
    ),
    "fiml_store_operations_total": (
        "counter",
        "Session store operations (the outermost call of each).",
        ("backend", "operation", "outcome"),
    ),
    "fiml_store_operation_duration_seconds": (
        "histogram",
        "Time of a session store operation.",
        ("backend", "operation"),
    ),
    "fiml_errors_total": (
        "counter",
        "Errors met by tool calls and background jobs, by exception class.",
        ("error",),
    ),
    "fiml_job_runs_total": ("counter", "Background job runs.", ("job", "outcome")),
    "fiml_cleanup_runs_total": ("counter", "Cleanup runs, by result.", ("outcome",)),
    "fiml_cleanup_sessions_total": (
        "counter",
        "Sessions cleanup runs met, by what became of them.",
        ("outcome",),
    ),
}

METRIC_LABELS: dict[str, tuple[str, ...]] = {
    **{name: labels for name, (_kind, _doc, labels) in _SERIES.items()},
    ACTIVE_SESSIONS: ("session_type",),
}
"""Every metric FIML exports, with its labels."""
HISTOGRAMS: frozenset[str] = frozenset(
    n for n, (kind, _d, _l) in _SERIES.items() if kind == "histogram"
)
"""The metrics that are histograms (they add ``_bucket`` (with ``le``), ``_sum``, ``_count``)."""
METRIC_NAMES: frozenset[str] = frozenset(METRIC_LABELS)
"""Every metric name FIML exports."""


def outcome_of(error: BaseException | None) -> str:
    """How a call ended, as the ``outcome`` label says it: ``ok``; ``refused`` (a
    FimlError the caller can act on); ``storage_error`` (Redis or the database failed it);
    ``internal`` (a bug)."""
    if error is None:
        return "ok"
    from fiml.core.errors import FimlError, StorageError

    if isinstance(error, StorageError):
        return "storage_error"
    return "refused" if isinstance(error, FimlError) else "internal"


class Recorder:
    """Where the package reports what it did; this base records nothing (metrics off)."""

    enabled = False

    def session_created(self, session_type: str) -> None:
        """A session was created."""

    def session_closed(self, session_type: str) -> None:
        """A session was closed by its user."""

    def session_archived(
        self, session_type: str, *, expired: bool, abandoned: bool, duration_seconds: float
    ) -> None:
        """A session was archived (it had expired unclosed if ``expired``)."""

    def sessions_archived_in_place(self, count: int) -> None:
        """``count`` sessions were archived, and which they were is not known here: in a
        batch another run had partly archived already (the archive says how many), or
        archived in place with facts that do not decode (quarantined). Their type is
        ``unknown``."""

    def sessions_quarantined(self, count: int) -> None:
        """Archival quarantined ``count`` sessions."""

    def query_tracked(self, session_type: str, query_type: str, cache_hit: bool) -> None:
        """A query was recorded in a session."""

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        """A tool call was answered with ``outcome`` after ``seconds``."""

    def store_operation(self, backend: str, operation: str, outcome: str, seconds: float) -> None:
        """A store operation ended with ``outcome`` after ``seconds``."""

    def error(self, error_class: str) -> None:
        """An error of class ``error_class`` reached a tool boundary or a job."""

    def job_run(self, job: str, outcome: str) -> None:
        """A background job ran (or was skipped, or failed)."""

    def cleanup_run(self, *, archived: int, failed: int, quarantined: int) -> None:
        """A cleanup run ended with these counts."""


class PrometheusRecorder(Recorder):
    """A recorder that counts into ``prometheus_client`` series.

    Label children are cached per label values: looking one up through ``labels()`` takes
    a lock and builds a tuple, which is most of what counting costs per tool call.
    """

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode the values live in the shared directory and are read back
        # by a MultiProcessCollector; registering the series too would serve them twice.
        self.registry: CollectorRegistry | None = None if self.multiprocess else CollectorRegistry()
        self.series: dict[str, Any] = {}
        for name, (kind, doc, labels) in _SERIES.items():
            if kind == "counter":
                self.series[name] = Counter(
                    name.removesuffix("_total"), doc, labels, registry=self.registry
                )
            else:
                buckets = _DURATION_BUCKETS if name.startswith("fiml_session_") else None
                self.series[name] = Histogram(
                    name,
                    doc,
                    labels,
                    registry=self.registry,
                    buckets=buckets or _LATENCY_BUCKETS,
                )
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _child(self, name: str, *labels: str) -> Any:
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            series = self.series[name]
            child = series.labels(*labels) if labels else series
            self._children[key] = child
        return child

    def session_created(self, session_type: str) -> None:
        self._child("fiml_sessions_created_total", session_type).inc()

    def session_closed(self, session_type: str) -> None:
        self._child("fiml_sessions_closed_total", session_type).inc()

    def session_archived(
        self, session_type: str, *, expired: bool, abandoned: bool, duration_seconds: float
    ) -> None:
        self._child("fiml_sessions_archived_total", session_type).inc()
        if expired:
            self._child("fiml_sessions_expired_total", session_type).inc()
        if abandoned:
            self._child("fiml_sessions_abandoned_total", session_type).inc()
        self._child("fiml_session_duration_seconds", session_type).observe(duration_seconds)

    def sessions_archived_in_place(self, count: int) -> None:
        if count:
            self._child("fiml_sessions_archived_total", UNKNOWN_TYPE).inc(count)

    def sessions_quarantined(self, count: int) -> None:
        if count:
            self._child("fiml_sessions_quarantined_total").inc(count)

    def query_tracked(self, session_type: str, query_type: str, cache_hit: bool) -> None:
        hit = "true" if cache_hit else "false"
        self._child("fiml_session_queries_total", session_type, query_type, hit).inc()

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self._child("fiml_tool_calls_total", tool, outcome).inc()
        self._child("fiml_tool_call_duration_seconds", tool).observe(seconds)

    def store_operation(self, backend: str, operation: str, outcome: str, seconds: float) -> None:
        self._child("fiml_store_operations_total", backend, operation, outcome).inc()
        self._child("fiml_store_operation_duration_seconds", backend, operation).observe(seconds)

    def error(self, error_class: str) -> None:
        self._child("fiml_errors_total", error_class).inc()

    def job_run(self, job: str, outcome: str) -> None:
        self._child("fiml_job_runs_total", job, outcome).inc()

    def cleanup_run(self, *, archived: int, failed: int, quarantined: int) -> None:
        outcome = "failed" if failed else "quarantined" if quarantined else "ok"
        self._child("fiml_cleanup_runs_total", outcome).inc()
        for name, count in (
            ("archived", archived),
            ("failed", failed),
            ("quarantined", quarantined),
        ):
            if count:
                self._child("fiml_cleanup_sessions_total", name).inc(count)

    def collecting_registry(self) -> CollectorRegistry:
        """A registry that yields this process's series, or every process's in
        multiprocess mode (read from the shared directory at each scrape)."""
        if self.registry is not None:
            return self.registry
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in 0.26
        return registry


_NULL = Recorder()
_current: Recorder = _NULL


def recorder() -> Recorder:
    """The process's recorder (a no-op one until :func:`enable_metrics`)."""
    return _current


def enable_metrics() -> PrometheusRecorder:
    """Count from now on into fresh Prometheus series; returns the recorder.

    Called once by a serving process at start; each call starts new series (tests use it
    to begin from zero).
    """
    global _current
    fresh = PrometheusRecorder()
    _current = fresh
    return fresh


def disable_metrics() -> None:
    """Stop counting (the no-op recorder again)."""
    global _current
    _current = _NULL


class _ActiveGauge:
    """A collector of one scrape's active-session counts (session type -> count)."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            ACTIVE_SESSIONS,
            "Sessions running now (neither closed, expired nor archived), read from the store.",
            labels=list(METRIC_LABELS[ACTIVE_SESSIONS]),
        )
        for kind, count in sorted(self.counts.items()):
            family.add_metric([kind], count)
        yield family


def exposition(active: Mapping[str, int] | None) -> tuple[bytes, str]:
    """The text exposition of every series, with the active-session gauge when ``active``
    (session type -> running sessions) was read; and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    current = recorder()
    registry = CollectorRegistry()
    if isinstance(current, PrometheusRecorder):
        body = generate_latest(current.collecting_registry())
    else:
        body = b""
    if active is not None:
        registry.register(_ActiveGauge(active))
        body += generate_latest(registry)
    return body, CONTENT_TYPE_LATEST


def serve_in_thread(host: str, port: int) -> None:
    """Serve ``/metrics`` (this process's series, or all processes' in multiprocess mode)
    from a daemon thread: for a process with no event loop of its own to serve from, a
    Celery worker. Enables the metrics if they are not yet."""
    from prometheus_client import start_http_server

    current = recorder()
    if not isinstance(current, PrometheusRecorder):
        current = enable_metrics()
    start_http_server(port, addr=host, registry=current.collecting_registry())
