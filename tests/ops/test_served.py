"""A real ``fiml serve --http`` process answers /healthz, /readyz and /metrics beside /mcp,
without a bearer token, and logs one record per tool call; ``fiml status --url`` reads it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.conftest import invoke
from tests.mcp.conftest import new_session
from tests.mcp.live_servers import http_client, http_server, write_tokens


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_the_http_server_serves_the_operators_endpoints(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", alice="user")
    async with (
        http_server(tmp_path, tmp_path / "tokens.json") as server,
        http_client(server.url, tokens["alice"]) as agent,
        httpx.AsyncClient(base_url=server.url.removesuffix("/mcp")) as http,
    ):
        await new_session(agent, session_type="equity")
        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["scheduler"]["running"] is True
        metrics = scraped((await http.get("/metrics")).text)
        calls = ("fiml_tool_calls_total", (("outcome", "ok"), ("tool", "create-analysis-session")))
        assert metrics[calls] == 1
        assert metrics[("fiml_sessions_active_total", (("session_type", "equity"),))] == 1
        assert metrics[("fiml_sessions_created_total", (("session_type", "equity"),))] == 1

        # The command runs its own event loop, as from a shell: in a thread of its own here.
        status = await anyio.to_thread.run_sync(
            functools.partial(invoke, "status", "--url", str(http.base_url), "--json")
        )
        assert status.exit_code == 0, status.output
        shown = json.loads(status.stdout)
        assert shown["ready"] is True and set(shown["checks"]) == set(ready.json()["checks"])
    log = server.log.decode()
    assert "event=tool.call tool=create-analysis-session user=alice" in log
