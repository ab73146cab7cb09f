"""Timing helpers shared by the benchmarks, and the writer of benchmarks/RESULTS.md.

Every figure is reported next to a floor measured in the same run (one raw driver round
trip), as a ratio, so results from different machines can be compared.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


async def fresh_postgres(url: str, *, drop_tables: tuple[str, ...] = ()) -> None:
    """Make the PostgreSQL database of ``url`` (``postgresql+asyncpg://``) ready for a run:
    created if missing, ``drop_tables`` of other software dropped, FIML's schema dropped and
    migrated to the newest revision, as production databases are migrated on purpose."""
    import asyncpg

    from fiml.sessions.db import create_engine
    from fiml.sessions.schema import drop_schema, upgrade_schema

    plain = url.replace("+asyncpg", "")
    server, name = plain.rsplit("/", 1)
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    if drop_tables:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {', '.join(drop_tables)} CASCADE")
        finally:
            await conn.close()
    engine = create_engine(url)
    try:
        await drop_schema(engine)
        await upgrade_schema(engine)
    finally:
        await engine.dispose()


WARMUP = 20
"""Calls of an operation made before its timed calls, by default."""


Operation = Callable[[int], Awaitable[object]]


async def cpu_per_call_by_variant(
    call: Callable[[], Awaitable[object]],
    setups: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    block: int,
    warmup: int = 20,
) -> dict[str, float]:
    """Median process CPU µs per ``call`` under each variant, over ``rounds`` of alternating
    blocks of ``block`` calls (``setups[variant]()`` before each block, then ``warmup``
    untimed calls), so load on a shared machine slows every variant alike."""
    blocks: dict[str, list[float]] = {variant: [] for variant in setups}
    for _ in range(rounds):
        for variant, setup in setups.items():
            setup()
            for _ in range(warmup):
                await call()
            started = time.process_time()
            for _ in range(block):
                await call()
            blocks[variant].append((time.process_time() - started) / block * 1e6)
    return {variant: statistics.median(times) for variant, times in blocks.items()}


@dataclass(frozen=True)
class Timing:
    """Latency percentiles of one operation, in milliseconds.

    ``floor_p50_ms`` holds the p50 of each floor timed alongside this operation (see
    :func:`measure`), by the floor's name.
    """

    name: str
    samples: int
    p50_ms: float
    p95_ms: float
    floor_p50_ms: dict[str, float] = field(default_factory=dict)

    def ratio(self, floor: Timing) -> float:
        """p50 of this operation over p50 of the floor, timed alongside it when it was."""
        return self.p50_ms / self.floor_p50_ms.get(floor.name, floor.p50_ms)


def _percentiles(durations: list[float]) -> tuple[float, float]:
    durations = sorted(durations)
    return statistics.median(durations), durations[
        min(len(durations) - 1, int(len(durations) * 0.95))
    ]


async def _timed(operation: Operation, i: int) -> float:
    start = time.perf_counter()
    await operation(i)
    return (time.perf_counter() - start) * 1000


async def measure(
    name: str,
    operation: Operation,
    *,
    samples: int,
    warmup: int = WARMUP,
    floors: dict[str, Operation] | None = None,
) -> Timing:
    """Run ``operation(i)`` sequentially and return its latency percentiles.

    With ``floors`` (floor name -> floor operation), each sample of the operation is
    preceded by one sample of every floor, and ratios use the floors' p50 from these
    interleaved samples: a machine shared with other work slows the floors and the
    operation alike, so the ratio holds while the absolute figures move.
    """
    floors = floors or {}
    for i in range(warmup):
        await operation(-1 - i)
    durations: list[float] = []
    floor_durations: dict[str, list[float]] = {f: [] for f in floors}
    for i in range(samples):
        for floor_name, floor in floors.items():
            floor_durations[floor_name].append(await _timed(floor, i))
        durations.append(await _timed(operation, i))
    p50, p95 = _percentiles(durations)
    floor_p50 = {f: _percentiles(d)[0] for f, d in floor_durations.items()}
    return Timing(name, samples, p50, p95, floor_p50)


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
