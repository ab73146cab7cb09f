"""The CPU the HTTP limits add to a request: the fair share and the body deadline.

    python benchmarks/bench_fair_share.py

An HTTP request, as uvicorn hands it to the ASGI app (a scope, one body message), is
driven in process into an app that reads the body and answers 200, in four ways:

- *floor*: that app alone;
- *body deadline*: wrapped in :class:`fiml.mcp.body_deadline.BodyDeadline`;
- *fair share*: wrapped in :class:`fiml.mcp.fair_share.FairShare`, the bearer token's user
  already remembered (the case of every request but one each few seconds);
- *both*: as ``fiml serve --http`` stacks them.

The variants run in alternating blocks, so a busy machine slows them alike; the figure is
the process CPU time per request (``time.process_time``), the ratio is to the floor. For
scale, a tool call's own CPU in process is in the ``metrics-overhead`` section. Results
replace the ``fair-share-overhead`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from harness import table, write_section
from mcp.server.auth.provider import AccessToken

from fiml.mcp.body_deadline import BodyDeadline
from fiml.mcp.fair_share import FairShare, FairShareLimits

BLOCK = 2000
ROUNDS = 25
BODY = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}'
SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": "/mcp",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", b"Bearer secret-token"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"mcp-session-id", b"0123456789abcdef"),
    ],
}


class OneUser:
    """A verifier that knows one token (the fair share asks it once, then remembers)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        return AccessToken(token=token, client_id="alice", scopes=[], subject="alice")


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def send(message: Any) -> None:
    return None


async def cpu_per_request(app: Any) -> float:
    started = time.process_time()
    for _ in range(BLOCK):
        await app(dict(SCOPE), receive, send)
    return (time.process_time() - started) / BLOCK * 1e6


async def main() -> None:
    limits = FairShareLimits(
        sessions_per_user=100,
        in_flight_per_user=32,
        requests_per_minute=10**9,
        session_idle_seconds=1800,
    )
    variants = {
        "floor": answer,
        "body deadline": BodyDeadline(answer, 30),
        "fair share": FairShare(answer, OneUser(), limits),
        "both (as served)": BodyDeadline(FairShare(answer, OneUser(), limits), 30),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for app in variants.values():
        await cpu_per_request(app)  # warm up, and the fair share learns the token
    for _ in range(ROUNDS):
        for name, app in variants.items():
            samples[name].append(await cpu_per_request(app))
    floor = statistics.median(samples["floor"])
    rows = []
    for name in variants:
        cpu = statistics.median(samples[name])
        rows.append([name, f"{cpu:.2f}", f"+{cpu - floor:.2f}", f"{cpu / floor:.3f}"])
    body = (
        f"CPU per HTTP request driven in process into an ASGI app that reads the body and "
        f"answers 200 (no network, no SDK), median of {ROUNDS} alternating blocks of "
        f"{BLOCK} requests per variant; ratio to the floor (the app alone). The fair share "
        "finds the bearer token's user in its memory, as for every request but one each "
        "few seconds. The added microseconds are what a served call pays on top of its own "
        "CPU (a tool call in process: section metrics-overhead).\n\n"
        + table(rows, ["variant", "CPU µs/request", "added µs", "ratio to floor"])
    )
    write_section("fair-share-overhead", "Fair share and body deadline overhead per request", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
