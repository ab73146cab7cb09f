"""``/dashboard`` on a real ``fiml serve --http``, without a browser: mounted beside ``/mcp``,
which keeps demanding its bearer token, and serving the analytics API's figures."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.store import SessionStore
from tests.mcp.live_servers import http_server, write_tokens


async def test_the_served_dashboard_logs_admins_in_and_serves_the_api_figures(
    tmp_path: Path, seeded_store: SessionStore
) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", root="admin", alice="user")
    analytics = SessionAnalytics(seeded_store)
    async with (
        http_server(tmp_path, tmp_path / "tokens.json") as server,
        httpx.AsyncClient(base_url=server.url.removesuffix("/mcp"), timeout=30) as http,
    ):
        assert (await http.get("/dashboard")).headers["location"] == "/dashboard/login"
        # A bearer token opens /mcp, not the dashboard: that takes the login.
        bearer = {"Authorization": f"Bearer {tokens['root']}"}
        assert (await http.get("/dashboard/data.json", headers=bearer)).status_code == 401
        form = await http.get("/dashboard/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        for user, status in (("alice", 403), ("root", 303)):
            login = await http.post(
                "/dashboard/login", data={"token": tokens[user], "csrf": csrf.group(1)}
            )
            assert login.status_code == status
        served = (await http.get("/dashboard/data.json?days=7&type=equity")).json()
        mcp = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        log = server.log.decode(errors="replace")
    assert served["stats"] == await analytics.get_session_stats(session_type="equity", days=7)
    assert served["series"] == await analytics.get_session_series(session_type="equity", days=7)
    assert mcp.status_code == 401  # the dashboard's cookie is no bearer token
    assert tokens["root"] not in log and tokens["alice"] not in log
