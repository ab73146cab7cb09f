"""Session search: SessionStore.search_user_sessions as the store grows from 1,000 to
100,000 sessions, each search's p50 against get_session's in the same run.

Run: ``python benchmarks/bench_search.py [--deployment sqlite|postgres|redis+postgres]
[--quick]``. The searcher owns 20 sessions (asset NVDA, tag watch, words only its contexts
hold, a tracked query on TSLA); the other sessions belong to 1,000 other users and hold
NVDA too, the searcher's tag, and a word of its context ("growth"), so a search that
looked beyond the searcher's own matches would grow with the store. A search is flat when
its ratio to get_session stays the same from 1,000 to 100,000 stored sessions.
PostgreSQL and Redis URLs: ``FIML_BENCH_DATABASE_URL``, ``FIML_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench_store import _analyze, _reset
from harness import Timing, measure, table, write_section

from fiml.sessions import QueryRecord, SessionStore, SessionType
from fiml.sessions.models import Session, utcnow

SEARCHER = "searcher"
MINE = 20
SEARCHES: dict[str, dict[str, Any]] = {
    "asset NVDA": {"asset": "NVDA"},
    "asset TSLA (a query's symbol)": {"asset": "TSLA"},
    "tag watch": {"tag": "watch"},
    "type equity": {"session_type": "equity"},
    "text 'margin expansion'": {"text": "margin expansion"},
    "text 'growth' (every stored context)": {"text": "growth"},
    "asset NVDA, active only, text": {
        "asset": "NVDA",
        "include_archived": False,
        "text": "margin",
    },
}


NOTE = """\
**Reading it.** Searches by asset (the session's or a query's symbol), tag or type, and by
words only the searcher's sessions hold, walk the searcher's own index rows: their ratio to
get_session should stay within noise from 1,000 to 100,000 stored sessions. A word that every
stored session's context holds ('growth') is found through the full-text index, which knows
no user: that search reads every session holding the word and grows with the store (on Redis
it walks the searcher's active sessions instead). Combine such a word with an asset or a tag
to keep it bounded."""


async def _seed_others(store: SessionStore, count: int, start: int) -> None:
    now = utcnow()

    async def one(i: int) -> None:
        session = Session(
            user_id=f"other{i % 1000}",
            type=SessionType.EQUITY,
            assets=["NVDA", ("AAPL", "MSFT", "AMD")[i % 3]],
            tags=["watch"],
            created_at=now,
            last_accessed_at=now,
            expires_at=now + timedelta(hours=100),
        )
        session.state.context["note"] = f"growth story {i}"
        await store.backend.insert(session)

    for first in range(start, start + count, 200):
        await asyncio.gather(*(one(i) for i in range(first, min(start + count, first + 200))))


async def _seed_mine(store: SessionStore) -> str:
    last = ""
    for i in range(MINE):
        session = await store.create_session(["NVDA"], "equity", user_id=SEARCHER, tags=["watch"])
        query = QueryRecord(
            query_type="search_by_symbol",
            parameters={"symbol": "TSLA"},
            result_summary="TSLA: $250.00 (+1.00%)",
        )
        await store.append_query(session.id, query)
        await store.update_state(session.id, context={"finding": f"margin expansion, growth {i}"})
        last = str(session.id)
    return last


async def run(deployment: str, quick: bool) -> None:
    samples = 60 if quick else 200
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = await _reset(deployment, Path(tmp))
        async with SessionStore(settings) as store:
            sid = await _seed_mine(store)

            async def get(_i: int) -> None:
                await store.get_session(sid)

            seeded = MINE
            for size in sizes:
                await _seed_others(store, size - seeded, seeded)
                seeded = size
                await _analyze(store)
                if deployment != "sqlite" and hasattr(store.archive, "engine"):
                    async with store.archive.engine.begin() as conn:
                        for name in ("session_search_terms", "session_queries"):
                            await conn.exec_driver_sql(f"ANALYZE {name}")
                base = await measure("get_session", get, samples=samples)
                rows.append([f"{size:,}", "get_session", f"{base.p50_ms:.3f}", "1.00"])
                for label, criteria in SEARCHES.items():

                    async def search(_i: int, criteria: dict[str, Any] = criteria) -> None:
                        page = await store.search_user_sessions(SEARCHER, limit=20, **criteria)
                        assert page.sessions, criteria

                    timing: Timing = await measure(
                        label, search, samples=samples, floors={"get_session": get}
                    )
                    ratio = timing.p50_ms / timing.floor_p50_ms["get_session"]
                    rows.append([f"{size:,}", label, f"{timing.p50_ms:.3f}", f"{ratio:.2f}"])
    body = table(rows, ["stored sessions", "search (page of 20)", "p50 ms", "x get_session"])
    body += (
        "\n\nRatios: a search's p50 over the p50 of get_session samples interleaved with it."
        + ("\n\n(quick run: 1,000 and 10,000 stored)" if quick else "")
        + "\n\n"
        + NOTE
    )
    write_section(f"search-{deployment}", f"Session search on {deployment}", body)
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deployment", choices=["sqlite", "postgres", "redis+postgres"], default="sqlite"
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller stores")
    args = parser.parse_args()
    asyncio.run(run(args.deployment, args.quick))


if __name__ == "__main__":
    main()
