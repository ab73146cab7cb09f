"""The dashboard's cost on the embedded SQLite default, what ``fiml dashboard`` reads.

    python benchmarks/bench_dashboard.py            # 1,000 and 10,000 recorded sessions
    python benchmarks/bench_dashboard.py --quick    # 1,000 only, fewer samples

Seeds recorded session facts created over the last 30 days (as bench_analytics.py does),
then times, for the 30-day window: ``get_session_stats`` (the SQL aggregates),
``get_session_series`` (the per-day series, which read every recorded session of the
window: O(sessions)), and one whole ``GET /dashboard`` (both, plus the HTML and SVG) through
the ASGI app. The floor, measured in the same run, is one raw aiosqlite INSERT + commit.
Results replace the ``dashboard`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
from bench_analytics import _engine, _facts, _floor
from harness import Timing, measure, table, write_section
from starlette.requests import Request

from fiml.core.config import Settings
from fiml.dashboard.local import local_app
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.metrics import insert_missing_facts
from fiml.sessions.models import utcnow
from fiml.sessions.store import SessionStore


def _everyone(_request: Request) -> bool:
    return True  # the benchmark's own client; who is let in is not what is timed


async def run(quick: bool) -> None:
    sizes = [1_000] if quick else [1_000, 10_000]
    samples = 5 if quick else 15
    rng = random.Random(16)
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        store = SessionStore(Settings(database_url=url, redis_url=None))
        await store.initialize()
        try:
            analytics = SessionAnalytics(store)
            floor = await _floor(store, samples * 10)
            app = local_app(analytics, "bench", _everyone)
            transport = httpx.ASGITransport(app=app)
            seeded = 0
            for size in sizes:
                now = utcnow()
                for chunk in range(seeded, size, 5_000):
                    batch = [  # squeezed into the last 30 days, the window timed
                        replace(f, created_at=now - (now - f.created_at) / 2)
                        for f in _facts(min(5_000, size - chunk), rng)
                    ]
                    batch = [f for f in batch if now - f.created_at < timedelta(days=30)]
                    async with _engine(store).begin() as conn:
                        await conn.run_sync(insert_missing_facts, batch, recorded_at=now)
                seeded = size
                label = f"{size:,} recorded, 30 days"

                async def stats(_i: int) -> None:
                    await analytics.get_session_stats(days=30)

                async def series(_i: int) -> None:
                    await analytics.get_session_series(days=30)

                async with httpx.AsyncClient(
                    transport=transport, base_url="http://127.0.0.1"
                ) as http:

                    async def page(_i: int) -> None:
                        response = await http.get("/dashboard?days=30")
                        assert response.status_code == 200, response.status_code

                    timings += [
                        await measure(f"get_session_stats, {label}", stats, samples=samples),
                        await measure(f"get_session_series, {label}", series, samples=samples),
                        await measure(f"GET /dashboard, {label}", page, samples=samples),
                    ]
        finally:
            await store.shutdown()
    header = ["operation", "p50 ms", "p95 ms", f"x {floor.name}"]
    rows = [
        [t.name, f"{t.p50_ms:.3f}", f"{t.p95_ms:.3f}", f"{t.ratio(floor):.2f}"]
        for t in [floor, *timings]
    ]
    body = table(rows, header)
    body += (
        "\n\nThe page is the stats, the series and the rendering; the series grow with the "
        "window's sessions (they fold every recorded session of it), the stats are SQL "
        "aggregates.\n"
    )
    if quick:
        body += "\n(quick run: smaller data set, fewer samples)\n"
    print(body)
    write_section("dashboard", "Dashboard on sqlite (fiml dashboard)", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller set, fewer samples")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
