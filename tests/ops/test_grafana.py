"""The Grafana dashboard (deploy/grafana/fiml-sessions.json) asks only for what FIML exports.

Every PromQL expression is read: each metric it names must be one of
:data:`fiml.core.metrics.METRIC_LABELS` (a histogram's ``_bucket``, ``_sum`` or ``_count``
series of one of them), each label it matches or groups by must be one of that metric's,
and every other word must be PromQL's. Every exported metric is on some panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fiml.core.metrics import HISTOGRAMS, METRIC_LABELS

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "fiml-sessions.json"
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "label_values",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_WORD = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def expressions() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]


def exported(series: str) -> tuple[str, set[str]]:
    """The exported metric a series belongs to, and the labels the series has."""
    if series in METRIC_LABELS:
        return series, set(METRIC_LABELS[series])
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and base in HISTOGRAMS:
            extra = {"le"} if suffix == "_bucket" else set()
            return base, set(METRIC_LABELS[base]) | extra
    raise AssertionError(f"{series} is not a metric FIML exports")


def metrics_in(expression: str) -> dict[str, set[str]]:
    """Each series an expression reads, with the labels it matches on."""
    bare = _STRING.sub('""', expression)
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(bare):
        found.setdefault(name, set()).update(_MATCHER.findall(matchers))
    words = _WORD.findall(re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare))
    grouped = {label.strip() for group in _GROUPING.findall(bare) for label in group.split(",")}
    for word in words:
        if word not in PROMQL_WORDS and word not in grouped:
            found.setdefault(word, set())
    found[""] = grouped  # the labels grouped by, checked against every series read
    return found


@pytest.mark.parametrize("expression", expressions())
def test_every_expression_reads_exported_series_by_their_labels(expression: str) -> None:
    found = metrics_in(expression)
    grouped = found.pop("")
    assert found, f"no metric in {expression}"
    labels: set[str] = set()
    for series, matched in found.items():
        _metric, has = exported(series)
        assert matched <= has, f"{series} has no label {matched - has}"
        labels |= has
    assert grouped <= labels, f"{expression} groups by {grouped - labels}"


def test_the_words_of_an_expression_are_read_as_metrics_labels_or_promql() -> None:
    found = metrics_in('sum by (tool) (rate(fiml_tool_calls_totl{outcome="ok"}[5m]))')
    assert found == {"fiml_tool_calls_totl": {"outcome"}, "": {"tool"}}
    with pytest.raises(AssertionError, match="not a metric"):
        exported("fiml_tool_calls_totl")


def test_every_exported_metric_is_on_a_panel() -> None:
    shown = {exported(s)[0] for e in expressions() for s in metrics_in(e) if s}
    assert shown == set(METRIC_LABELS)


def test_the_template_variable_reads_an_exported_label() -> None:
    [variable] = dashboard()["templating"]["list"]
    match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
    assert match is not None
    metric, label = match.groups()
    assert label in METRIC_LABELS[metric]


def test_panels_fit_the_grid_and_have_their_own_ids() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert [t["refId"] for t in panel["targets"]] == [
                chr(65 + i) for i in range(len(panel["targets"]))
            ]
