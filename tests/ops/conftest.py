"""Fixtures of the operations tests: fresh Prometheus series for each test, and reading them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fiml.core.metrics import PrometheusRecorder, disable_metrics, enable_metrics


@pytest.fixture
def metrics() -> Iterator[PrometheusRecorder]:
    """Metrics on, from zero, for this test only."""
    recorder = enable_metrics()
    yield recorder
    disable_metrics()


def sample(recorder: PrometheusRecorder, name: str, **labels: str) -> float:
    """A series' value (0 when it was never counted)."""
    registry = recorder.collecting_registry()
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def samples_by(recorder: PrometheusRecorder, name: str, label: str) -> dict[str, float]:
    """A series' values by one label, summed over the others."""
    found: dict[str, float] = {}
    for family in recorder.collecting_registry().collect():
        for s in family.samples:
            if s.name == name:
                found[s.labels[label]] = found.get(s.labels[label], 0.0) + s.value
    return found
