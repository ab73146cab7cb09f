"""The SVG charts: accessible, escaped, and carrying their figures as text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fiml.dashboard.svg import bar_chart, line_chart, stacked_bar_chart

SVG = "{http://www.w3.org/2000/svg}"


def parsed(svg: str) -> ET.Element:
    """The chart as XML: it must be well-formed to be drawn at all."""
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_a_chart_is_an_image_labelled_by_its_title_and_description() -> None:
    root = parsed(bar_chart("Top assets", [("AAPL", 3), ("BTC", 2)]))
    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert title.text == "Top assets" and desc.text == "AAPL: 3; BTC: 2"


def test_bars_show_their_labels_and_values_as_text_and_scale_to_the_largest() -> None:
    root = parsed(bar_chart("Mix", [("search_by_symbol", 20), ("search_by_coin", 5)]))
    assert {"search_by_symbol", "20", "search_by_coin", "5"} <= set(texts(root))
    widths = [float(r.get("width", "0")) for r in root.iter(f"{SVG}rect")]
    assert widths[0] == 4 * widths[1]


def test_text_is_escaped() -> None:
    root = parsed(bar_chart("<b>&", [("<script>", 1)]))
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "<b>&"
    assert "<script>" in texts(root)  # as text, not as an element
    assert root.find(f".//{SVG}script") is None


def test_an_empty_chart_says_so() -> None:
    assert "No data in this window" in texts(parsed(bar_chart("Top assets", [])))
    assert "No queries in this window" in texts(parsed(line_chart("Hits", [("2026-01-01", None)])))


def test_stacked_bars_label_each_day_total_and_each_series_total() -> None:
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    root = parsed(stacked_bar_chart("Per day", days, {"equity": [1, 0, 2], "crypto": [3, 0, 0]}))
    shown = texts(root)
    assert "equity (3)" in shown and "crypto (3)" in shown
    # The axis tops at 4 and the first day's bar says 4; the empty day has no label.
    assert shown.count("4") == 2 and "2" in shown
    assert "01-01" in shown and "01-03" in shown
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert "2026-01-01: 4" in desc.text and "2026-01-02" not in desc.text


def test_the_rate_line_breaks_where_a_day_has_no_queries() -> None:
    points = [("2026-01-01", 0.5), ("2026-01-02", 1.0), ("2026-01-03", None), ("2026-01-04", 0.0)]
    root = parsed(line_chart("Hits", points))
    assert len(list(root.iter(f"{SVG}circle"))) == 3
    assert len(list(root.iter(f"{SVG}polyline"))) == 1  # the lone last point draws no line
    assert {"50%", "100%", "0%"} <= set(texts(root))


def test_many_days_get_at_most_about_eight_labels() -> None:
    days = [f"2026-01-{n:02d}" for n in range(1, 32)]
    root = parsed(stacked_bar_chart("Per day", days, {"equity": [1] * 31}))
    labels = [t for t in texts(root) if t.startswith("01-")]
    assert 2 <= len(labels) <= 9 and labels[-1] == "01-31"
