"""The CPU OpenTelemetry tracing adds to a tool call, off and on.

    python benchmarks/bench_tracing.py

A search without a session (no storage: the call's own CPU, unblurred by a database
driver's threads) is called in process through the SDK's ``MCPServer.call_tool`` (no
transport, so without the MCP SDK's own server span), with offline quotes, metrics off and
the call's log record filtered out by level, in three ways:

- *floor*: tracing off (what every process without the ``OTEL_*`` variables pays: one
  global test per hook);
- *on, sampled out*: spans made on an SDK tracer provider whose sampler drops them all
  (``OTEL_TRACES_SAMPLER=always_off``);
- *on, exported*: every span recorded and handed to a ``BatchSpanProcessor`` whose
  exporter discards them (the process's share of exporting, its batching thread included,
  without a collector's network time).

The three run in alternating blocks of calls, so that a machine shared with other work
slows them alike; the figure is the process CPU time per call (``time.process_time``, all
threads), and the ratio is to the floor. What one span costs by itself, and what the hook
costs with tracing off, are timed in loops of their own and given as ratios to the same
floor: a call that reads the store once makes two spans. Results replace the
``tracing-overhead`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from harness import cpu_per_call_by_variant, table, write_section
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from fiml.core import tracing
from fiml.core.config import Settings
from fiml.core.metrics import disable_metrics
from fiml.market.service import MarketData
from fiml.mcp.auth import Identity, StaticIdentity
from fiml.mcp.server import build_server
from fiml.sessions import SessionStore

BLOCK = 200
"""Calls per timed block."""
ROUNDS = 25
"""Blocks of each variant; the median block is reported."""

Call = Callable[[], Awaitable[object]]


class _Discarding(SpanExporter):
    """An exporter that drops what it is given, successfully."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _providers() -> dict[str, TracerProvider | None]:
    exported = TracerProvider()
    exported.add_span_processor(BatchSpanProcessor(_Discarding()))
    return {
        "floor (tracing off)": None,
        "on, sampled out": TracerProvider(sampler=ALWAYS_OFF),
        "on, exported": exported,
    }


def _use(provider: TracerProvider | None) -> None:
    if provider is None:
        tracing.disable_tracing()
    else:
        tracing.enable_tracing(provider)


async def _measure(call: Call, providers: dict[str, TracerProvider | None]) -> dict[str, float]:
    setups = {variant: functools.partial(_use, provider) for variant, provider in providers.items()}
    figures = await cpu_per_call_by_variant(call, setups, rounds=ROUNDS, block=BLOCK)
    tracing.disable_tracing()
    return figures


def _span_cost(provider: TracerProvider | None, n: int = 50_000) -> float:
    """CPU µs of one store-operation span started and ended (or of the check, when off)."""
    _use(provider)
    attributes = {"fiml.store.operation": "get_session", "fiml.store.backend": "sqlite"}
    started = time.process_time()
    for _ in range(n):
        span = tracing.start(tracing.STORE_SPAN, "get_session", attributes)
        if span is not None:
            span.end(None, "ok")
    cost = (time.process_time() - started) / n * 1e6
    tracing.disable_tracing()
    return cost


async def main() -> None:
    disable_metrics()
    logging.getLogger("fiml.calls").setLevel(logging.WARNING)
    providers = _providers()
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

                figures = await _measure(call, providers)
    floor = figures["floor (tracing off)"]
    rows = [
        [variant, f"{cpu:.1f}", f"{cpu - floor:+.1f}", f"{cpu / floor:.3f}"]
        for variant, cpu in figures.items()
    ]
    alone = {
        "the hook with tracing off, alone": _span_cost(None),
        "one span sampled out, alone": _span_cost(providers["on, sampled out"]),
        "one span exported, alone": _span_cost(providers["on, exported"]),
    }
    rows += [
        [name, f"{cost:.2f}", f"+{cost:.2f}", f"{cost / floor:.3f}"] for name, cost in alone.items()
    ]
    for provider in providers.values():
        if provider is not None:
            provider.shutdown()
    body = (
        f"CPU per in-process tool call (`MCPServer.call_tool` of search-by-symbol without a "
        f"session, offline quotes, metrics off, no log record), median of {ROUNDS} "
        f"alternating blocks of {BLOCK} calls per variant; ratio to the floor (tracing "
        f"off). *Sampled out*: an SDK provider whose sampler drops every span; *exported*: "
        f"every span recorded and batched to an exporter that discards it (no network). "
        f"The last three rows time one store-operation span alone (50 000 times each; with "
        f"tracing off, the hook's check) against the same floor; a call that reads the "
        f"store once makes one more span than this one.\n\n"
        + table(rows, ["variant", "CPU µs/call", "added µs", "ratio to floor"])
    )
    print(body)
    write_section("tracing-overhead", "Tracing overhead per tool call", body)


if __name__ == "__main__":
    asyncio.run(main())
