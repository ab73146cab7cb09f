"""What /metrics serves is exactly the declared list (fiml.core.metrics.METRIC_LABELS)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from fiml.core.metrics import (
    ACTIVE_SESSIONS,
    HISTOGRAMS,
    METRIC_LABELS,
    PrometheusRecorder,
    exposition,
)


def record_one_of_each(recorder: PrometheusRecorder) -> None:
    recorder.session_created("equity")
    recorder.session_closed("equity")
    recorder.session_archived("equity", expired=True, abandoned=True, duration_seconds=60)
    recorder.sessions_quarantined(1)
    recorder.query_tracked("equity", "search_by_symbol", True)
    recorder.tool_call("get-session-info", "ok", 0.01)
    recorder.store_operation("sqlite", "get_session", "ok", 0.01)
    recorder.error("StorageUnavailableError")
    recorder.job_run("cleanup_expired_sessions", "ok")
    recorder.cleanup_run(archived=1, failed=1, quarantined=1)


def test_the_exposition_holds_the_declared_metrics_with_their_labels(
    metrics: PrometheusRecorder,
) -> None:
    record_one_of_each(metrics)
    body, content_type = exposition({"equity": 2})
    assert content_type.startswith("text/plain")
    served: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # the client's creation timestamps, beside each counter
            base = sample.name
            for suffix in ("_bucket", "_sum", "_count"):
                if base.removesuffix(suffix) in HISTOGRAMS:
                    base = base.removesuffix(suffix)
            served.setdefault(base, set()).update(set(sample.labels) - {"le"})
    assert served == {name: set(labels) for name, labels in METRIC_LABELS.items()}
    assert ACTIVE_SESSIONS in served


def test_without_the_store_count_the_gauge_is_left_out(metrics: PrometheusRecorder) -> None:
    metrics.session_created("crypto")
    body, _ = exposition(None)
    assert ACTIVE_SESSIONS.encode() not in body
    assert b'fiml_sessions_created_total{session_type="crypto"} 1.0' in body
