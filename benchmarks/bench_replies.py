"""How many bytes each MCP tool's reply puts on the wire, at 1, 10 and 100 tracked queries.

    python benchmarks/bench_replies.py
    python benchmarks/bench_replies.py --save before.json   # keep the figures of this code
    python benchmarks/bench_replies.py --before before.json # and show them next to these

A reply's size is its text block and its structured content as the SDK's transports
send them (JSON with the protocol's field names), without the SDK's fixed envelope.
Each tool is called with its default arguments through the SDK's in-memory client, on
a SQLite store in a temporary directory with offline quotes, on a session holding 1, 10
and 100 queries (tracked searches, alternating symbols and coins).
Bytes do not depend on the machine's load, so one call per row is enough; the run takes
a few seconds. Results replace the ``replies`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import pydantic_core
from harness import table, write_section
from mcp import Client
from mcp.types import CallToolResult

from fiml.core.config import Settings
from fiml.market.service import MarketData
from fiml.mcp.auth import Identity, StaticIdentity
from fiml.mcp.server import build_server
from fiml.sessions import SessionStore

USER = "bench-analyst"
HISTORY = (1, 10, 100)
"""Queries in the session when each tool is called."""

Sizes = dict[str, dict[int, int]]
"""Bytes of each tool's reply (by row name), by the session's query count."""


def reply_bytes(result: CallToolResult) -> int:
    """The bytes of a reply's text and structured content as a transport sends them.

    As :func:`fiml.mcp.replies.reply_bytes` counts them, written out here so the script
    also measures the code from before that module (the "before" column).
    """
    sent = result.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return len(pydantic_core.to_json(sent.get("content", []))) + len(
        pydantic_core.to_json(sent.get("structuredContent"))
    )


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result


def _search(i: int, session_id: str) -> tuple[str, dict[str, Any]]:
    if i % 3 == 2:
        return "search-by-coin", {"symbol": ("BTC", "ETH")[i % 2], "session_id": session_id}
    return "search-by-symbol", {"symbol": ("AAPL", "MSFT")[i % 2], "session_id": session_id}


async def _at_history(client: Client, queries: int) -> dict[str, int]:
    """Every tool's reply size on a fresh session that ends up holding ``queries`` queries."""
    created = await _call(
        client,
        "create-analysis-session",
        {"assets": ["AAPL", "MSFT", "BTC"], "session_type": "comparative", "tags": ["bench"]},
    )
    assert isinstance(created.structured_content, dict)
    sid = str(created.structured_content["session_id"])
    sizes = {"create-analysis-session": reply_bytes(created)}
    await _call(client, "update-session-context", {"session_id": sid, "context": {"goal": "x"}})
    for i in range(queries - 1):
        await _call(client, *_search(i, sid))
    tracked = await _call(client, "search-by-symbol", {"symbol": "AAPL", "session_id": sid})
    sizes["search-by-symbol (tracked)"] = reply_bytes(tracked)
    untracked = await _call(client, "search-by-symbol", {"symbol": "AAPL"})
    sizes["search-by-symbol (untracked)"] = reply_bytes(untracked)
    for tool, arguments in (
        ("get-session-info", {"session_id": sid}),
        ("get-session-history", {"session_id": sid}),
        ("list-sessions", {}),
        ("update-session-context", {"session_id": sid, "context": {"goal": "compare"}}),
        ("extend-session", {"session_id": sid, "hours": 1}),
        ("get-session-analytics", {}),
        ("close-analysis-session", {"session_id": sid}),
    ):
        sizes[tool] = reply_bytes(await _call(client, tool, arguments))
    return sizes


async def _coin_at_history(client: Client, queries: int) -> int:
    created = await _call(
        client, "create-analysis-session", {"assets": ["BTC"], "session_type": "crypto"}
    )
    assert isinstance(created.structured_content, dict)
    sid = str(created.structured_content["session_id"])
    for i in range(queries - 1):
        await _call(client, *_search(i, sid))
    return reply_bytes(await _call(client, "search-by-coin", {"symbol": "BTC", "session_id": sid}))


async def run() -> Sizes:
    sizes: Sizes = {}
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}",
            redis_url=None,
            market_provider="offline",
        )
        async with SessionStore(settings) as store, MarketData.offline() as market:
            identity = StaticIdentity(Identity(USER, "user"))
            server = build_server(store=store, market=market, identity=identity)
            async with Client(server) as client:
                for queries in HISTORY:
                    for tool, size in (await _at_history(client, queries)).items():
                        sizes.setdefault(tool, {})[queries] = size
                    coin = await _coin_at_history(client, queries)
                    sizes.setdefault("search-by-coin (tracked)", {})[queries] = coin
    return sizes


def _report(sizes: Sizes, before: Sizes | None) -> str:
    header = ["tool (default arguments)", *(f"{n} queries" for n in HISTORY)]
    rows = []
    for tool in sorted(sizes):
        cells = []
        for n in HISTORY:
            now = f"{sizes[tool][n]:,} B"
            then = (before or {}).get(tool, {}).get(n)
            cells.append(now if then is None else f"{then:,} → {now}")
        rows.append([tool, *cells])
    lead = (
        "Bytes of each tool's `tools/call` result on the wire (text block and structured "
        "content together), on a session holding 1, 10 and 100 queries; "
        "`python benchmarks/bench_replies.py`. `list-sessions` lists the sessions the run "
        "made so far (1, 3, 5), `get-session-info` its latest query (its default), "
        "`get-session-history` its first page of 50."
    )
    if before is not None:
        lead += " Before → after the compact replies of issue 15."
    return f"{lead}\n\n{table(rows, header)}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--before", type=Path, help="figures saved earlier, shown alongside")
    args = parser.parse_args()
    sizes = asyncio.run(run())
    if args.save is not None:
        args.save.write_text(json.dumps(sizes, indent=1))
    before = None
    if args.before is not None:
        saved = json.loads(args.before.read_text())
        before = {tool: {int(n): v for n, v in row.items()} for tool, row in saved.items()}
    body = _report(sizes, before)
    print(body)
    write_section("replies", "MCP reply sizes (bytes on the wire)", body)


if __name__ == "__main__":
    main()
