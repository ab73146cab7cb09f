"""Charts as server-rendered SVG: no script, no chart library, nothing fetched at run time.

Each chart is an ``<svg role="img">`` labelled by its own ``<title>`` and ``<desc>`` (the
description states every figure, for screen readers), and draws its figures as text next
to the marks, so it reads without hovering. Colours are the Okabe-Ito palette, which stays
distinguishable with the common colour-vision deficiencies; each series also has a text
legend. Every text that reaches the markup is escaped here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from itertools import count

__all__ = ["PALETTE", "bar_chart", "line_chart", "stacked_bar_chart"]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
_AXIS = "#555555"
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'
_ids = count(1)


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _open(width: int, height: int, title: str, desc: str) -> tuple[str, str]:
    """The opening of an accessible SVG, and its id prefix."""
    prefix = f"chart{next(_ids)}"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-labelledby="{prefix}-t {prefix}-d" {_FONT}>'
        f'<title id="{prefix}-t">{escape(title)}</title>'
        f'<desc id="{prefix}-d">{escape(desc)}</desc>'
    )
    return head, prefix


def _nice_max(value: float) -> float:
    """A round upper end for an axis holding ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    return float(-(-value // step) * step)


def bar_chart(
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    width: int = 420,
    color: str = PALETTE[0],
) -> str:
    """Horizontal bars, one per ``(label, value)``, each labelled with its value."""
    row, label_width, top = 24, 130, 8
    height = top * 2 + row * max(len(items), 1)
    desc = "; ".join(f"{label}: {_number(v)}{unit}" for label, v in items) or "no data"
    head, _ = _open(width, height, title, desc)
    parts = [head]
    if not items:
        parts.append(f'<text x="8" y="{top + 16}" fill="{_AXIS}">No data in this window</text>')
    peak = max((v for _, v in items), default=0) or 1
    span = width - label_width - 60
    for index, (label, value) in enumerate(items):
        y = top + index * row
        bar = round(span * value / peak, 1)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{bar}" height="{row - 8}" '
            f'fill="{color}"><title>{escape(label)}: {_number(value)}{unit}</title></rect>'
            f'<text x="{label_width + bar + 4}" y="{y + 16}">{_number(value)}{unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _x_labels(categories: Sequence[str], x_of: list[float], y: float) -> list[str]:
    """At most about eight category labels under the axis, the last one always."""
    every = max(1, -(-len(categories) // 8))
    shown = [i for i in range(len(categories)) if i % every == 0 or i == len(categories) - 1]
    if len(shown) > 1 and shown[-1] - shown[-2] < every:
        shown.pop(-2)  # keep the last day's label clear of its neighbour
    return [
        f'<text x="{x_of[i]}" y="{y}" text-anchor="middle">{escape(categories[i][5:])}</text>'
        for i in shown
    ]


def stacked_bar_chart(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    width: int = 640,
    height: int = 220,
) -> str:
    """One stacked bar per category (a day, ``YYYY-MM-DD``), one colour per series; each
    bar is labelled with its total, and the legend with each series' total."""
    left, right, top, bottom = 36, 8, 36, 24
    plot_h = height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    axis_max = _nice_max(max(totals, default=0))
    slot = (width - left - right) / max(len(categories), 1)
    bar_w = max(slot * 0.7, 1.0)
    x_of = [round(left + slot * i + slot / 2, 1) for i in range(len(categories))]
    legend = "; ".join(f"{name} {sum(values)}" for name, values in series.items())
    days = "; ".join(
        f"{day}: {total}" for day, total in zip(categories, totals, strict=True) if total
    )
    head, _ = _open(width, height, title, f"Totals: {legend}. Per day: {days or 'none'}.")
    parts = [head]
    x = left
    for index, name in enumerate(series):
        label = f"{name} ({sum(series[name])})"
        parts.append(
            f'<rect x="{x}" y="6" width="10" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="15">{escape(label)}</text>'
        )
        x += 32 + 7 * len(label)  # about a character's width at this size, and a gap
    base = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="{_AXIS}"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" fill="{_AXIS}">'
        f"{_number(axis_max)}</text>"
        f'<text x="{left - 4}" y="{base}" text-anchor="end" fill="{_AXIS}">0</text>'
    )
    for i, day in enumerate(categories):
        y = float(base)
        for index, (name, values) in enumerate(series.items()):
            if not values[i]:
                continue
            h = round(plot_h * values[i] / axis_max, 1)
            y -= h
            parts.append(
                f'<rect x="{round(x_of[i] - bar_w / 2, 1)}" y="{round(y, 1)}" '
                f'width="{round(bar_w, 1)}" height="{h}" '
                f'fill="{PALETTE[index % len(PALETTE)]}">'
                f"<title>{escape(day)} {escape(name)}: {values[i]}</title></rect>"
            )
        if totals[i]:
            parts.append(
                f'<text x="{x_of[i]}" y="{round(y - 3, 1)}" text-anchor="middle">{totals[i]}</text>'
            )
    parts.extend(_x_labels(categories, x_of, height - 6))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    title: str,
    points: Sequence[tuple[str, float | None]],
    *,
    width: int = 640,
    height: int = 200,
    color: str = PALETTE[2],
) -> str:
    """A rate from 0 to 1 per category (a day), drawn in percent; None (no data that day)
    breaks the line. Each point is labelled with its percentage."""
    left, right, top, bottom = 40, 8, 16, 24
    plot_h = height - top - bottom
    slot = (width - left - right) / max(len(points), 1)
    x_of = [round(left + slot * i + slot / 2, 1) for i in range(len(points))]
    known = [f"{day}: {rate:.0%}" for day, rate in points if rate is not None]
    head, _ = _open(width, height, title, "; ".join(known) or "No queries in this window.")
    parts = [head]
    base = top + plot_h
    for fraction in (0.0, 0.5, 1.0):
        y = round(base - plot_h * fraction, 1)
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" stroke="#dddddd"/>'
            f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" fill="{_AXIS}">'
            f"{fraction:.0%}</text>"
        )
    runs: list[list[tuple[float, float]]] = [[]]
    for i, (day, rate) in enumerate(points):
        if rate is None:
            runs.append([])
            continue
        y = round(base - plot_h * rate, 1)
        runs[-1].append((x_of[i], y))
        parts.append(
            f'<circle cx="{x_of[i]}" cy="{y}" r="3" fill="{color}">'
            f"<title>{escape(day)}: {rate:.0%}</title></circle>"
        )
    for run in runs:
        if len(run) > 1:
            path = " ".join(f"{x},{y}" for x, y in run)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}"/>')
    labelled = [(i, rate) for i, (_, rate) in enumerate(points) if rate is not None]
    every = max(1, -(-len(labelled) // 8))
    for n, (i, rate) in enumerate(labelled):
        if n % every == 0 or n == len(labelled) - 1:
            y = round(base - plot_h * rate, 1)
            anchor = "end" if x_of[i] > width - right - 16 else "middle"  # not past the edge
            parts.append(
                f'<text x="{x_of[i]}" y="{round(max(y - 6, 10), 1)}" text-anchor="{anchor}">'
                f"{rate:.0%}</text>"
            )
    if not labelled:
        parts.append(
            f'<text x="{left + 8}" y="{top + plot_h / 2}" fill="{_AXIS}">'
            "No queries in this window</text>"
        )
    parts.extend(_x_labels([day for day, _ in points], x_of, height - 6))
    parts.append("</svg>")
    return "".join(parts)
