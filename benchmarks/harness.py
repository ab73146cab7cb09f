"""Timing helpers shared by the benchmarks, and the writer of benchmarks/RESULTS.md.

Every figure is reported next to a floor measured in the same run (one raw driver round
trip), as a ratio, so results from different machines can be compared.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass(frozen=True)
class Timing:
    """Latency percentiles of one operation, in milliseconds."""

    name: str
    samples: int
    p50_ms: float
    p95_ms: float

    def ratio(self, floor: Timing) -> float:
        """p50 of this operation over p50 of the floor."""
        return self.p50_ms / floor.p50_ms


async def measure(
    name: str, operation: Callable[[int], Awaitable[object]], *, samples: int, warmup: int = 20
) -> Timing:
    """Run ``operation(i)`` sequentially and return its latency percentiles."""
    for i in range(warmup):
        await operation(-1 - i)
    durations = []
    for i in range(samples):
        start = time.perf_counter()
        await operation(i)
        durations.append((time.perf_counter() - start) * 1000)
    durations.sort()
    p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))]
    return Timing(name, samples, statistics.median(durations), p95)


def machine() -> str:
    """One line describing where the figures come from."""
    return f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) one section of RESULTS.md, leaving the others as they are."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- begin {key} -->\n## {title}\n\n_{stamp}, {machine()}._\n\n{body.strip()}\n"
        f"<!-- end {key} -->"
    )
    pattern = re.compile(rf"<!-- begin {re.escape(key)} -->.*?<!-- end {re.escape(key)} -->", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else f"{text}\n{section}\n"
    RESULTS.write_text(text)
