"""The CPU the operator's view adds to a tool call: Prometheus counting and the call's log record.

    python benchmarks/bench_metrics.py

A search without a session (no storage: the call's own CPU, unblurred by a database
driver's threads) is called in process through the SDK's ``MCPServer.call_tool`` (no
transport), with offline quotes, in three ways:

- *floor*: metrics off and the call's log record filtered out by level (what an embedder
  that enables nothing pays);
- *metrics*: counted into Prometheus series (the tool-call counter and histogram, the
  store-operation counter and histogram, and the tool's own counters);
- *metrics + log*: also one ``tool.call`` record per call written, as ``fiml serve``
  writes it at INFO, in text and in JSON, to a stream that discards it.

The three run in alternating blocks of calls, so that a machine shared with other work
slows them alike; the figure is the process CPU time per call (``time.process_time``),
and the ratio is to the floor. What counting costs by itself (a tool call's two series, a
store operation's two) is timed in a loop of its own, and given as a ratio to the same
floor: a call that reads the store once adds both. Results replace the
``metrics-overhead`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import cpu_per_call_by_variant, table, write_section

from fiml.core.config import Settings
from fiml.core.logs import EventFormatter, JsonFormatter
from fiml.core.metrics import PrometheusRecorder, disable_metrics, enable_metrics
from fiml.market.service import MarketData
from fiml.mcp.auth import Identity, StaticIdentity
from fiml.mcp.server import build_server
from fiml.sessions import SessionStore

BLOCK = 200
"""Calls per timed block."""
ROUNDS = 25
"""Blocks of each variant; the median block is reported."""
CALLS_LOGGER = logging.getLogger("fiml.calls")

Call = Callable[[], Awaitable[object]]


def _log_to_nowhere(formatter: logging.Formatter | None) -> None:
    CALLS_LOGGER.handlers.clear()
    CALLS_LOGGER.propagate = False
    if formatter is None:
        CALLS_LOGGER.setLevel(logging.WARNING)
        return
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(formatter)
    CALLS_LOGGER.addHandler(handler)
    CALLS_LOGGER.setLevel(logging.INFO)


def _setup(variant: str) -> None:
    if variant == "floor":
        disable_metrics()
    else:
        enable_metrics()
    formatter = {"text": EventFormatter(), "json": JsonFormatter()}.get(variant.split()[-1])
    _log_to_nowhere(formatter if "log" in variant else None)


VARIANTS = ("floor", "metrics", "metrics + log text", "metrics + log json")


async def _measure(call: Call) -> dict[str, float]:
    # The variant's first calls (the warm-up) make its label children.
    setups = {variant: functools.partial(_setup, variant) for variant in VARIANTS}
    figures = await cpu_per_call_by_variant(call, setups, rounds=ROUNDS, block=BLOCK)
    disable_metrics()
    return figures


def _counting_cost(count: Callable[[PrometheusRecorder], None], n: int = 100_000) -> float:
    """CPU µs of one ``count(recorder)``, its label children made beforehand."""
    recorder = enable_metrics()
    count(recorder)
    started = time.process_time()
    for _ in range(n):
        count(recorder)
    cost = (time.process_time() - started) / n * 1e6
    disable_metrics()
    return cost


async def main() -> None:
    async with MarketData.offline() as market:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
            async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
                server = build_server(
                    store=store, market=market, identity=StaticIdentity(Identity("bench"))
                )
                arguments: dict[str, Any] = {"symbol": "AAPL"}

                async def call() -> object:
                    return await server.call_tool("search-by-symbol", arguments)

                figures = await _measure(call)
    floor = figures["floor"]
    rows = [
        [variant, f"{cpu:.1f}", f"{cpu - floor:+.1f}", f"{cpu / floor:.3f}"]
        for variant, cpu in figures.items()
    ]
    tool = _counting_cost(lambda r: r.tool_call("search-by-symbol", "ok", 0.001))
    operation = _counting_cost(
        lambda r: r.store_operation("redis+postgresql", "get_session", "ok", 0.001)
    )
    rows += [
        ["counting one tool call, alone", f"{tool:.2f}", f"+{tool:.2f}", f"{tool / floor:.3f}"],
        [
            "counting one store operation, alone",
            f"{operation:.2f}",
            f"+{operation:.2f}",
            f"{operation / floor:.3f}",
        ],
    ]
    body = (
        f"CPU per in-process tool call (`MCPServer.call_tool` of search-by-symbol without a "
        f"session, offline quotes), median of {ROUNDS} alternating blocks of {BLOCK} calls "
        f"per variant; ratio to the floor (metrics off, no log record). The last two rows "
        f"time the counting alone (100 000 times each) against the same floor. A call that "
        f"reads the store once adds one of each; writing the call's log record costs more "
        f"than counting it (`FIML_LOG_TOOL_CALLS=false` drops it).\n\n"
        + table(rows, ["variant", "CPU µs/call", "added µs", "ratio to floor"])
    )
    print(body)
    write_section("metrics-overhead", "Metrics and call-log overhead per tool call", body)


if __name__ == "__main__":
    asyncio.run(main())
