"""Who gets in: admins through the login form, into a signed, HttpOnly, SameSite=Strict
cookie; nobody else, and the token is never in a URL nor in a log record."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from fiml.dashboard.app import AdminLogin, dashboard_routes
from fiml.dashboard.auth import CSRF_COOKIE, SESSION_COOKIE, SessionSigner
from fiml.mcp.auth import TokenFile
from fiml.mcp.token_watch import WatchedTokenFile
from fiml.sessions.analytics import SessionAnalytics

BASE = "http://127.0.0.1:8000"


class Tokens:
    """Tokens for an admin and a user, in a file the test can edit as an operator would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = TokenFile([])
        self.admin = self.file.add_token("root", "admin")
        self.user = self.file.add_token("alice", "user")
        self.file.save(path)

    def current(self) -> TokenFile:
        return self.file


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path / "tokens.json")


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
async def client(
    analytics: SessionAnalytics, tokens: Tokens, clock: list[float]
) -> AsyncIterator[httpx.AsyncClient]:
    signer = SessionSigner(lifetime_seconds=600, clock=lambda: clock[0])
    app = Starlette(routes=dashboard_routes(analytics, AdminLogin(tokens, signer)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield http


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field in the form"
    return found.group(1)


async def log_in(http: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await http.get("/dashboard/login")
    return await http.post("/dashboard/login", data={"token": token, "csrf": csrf_of(form.text)})


async def test_without_a_cookie_the_page_sends_to_the_login_form(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/dashboard?days=7", follow_redirects=True)
    assert response.url.path == "/dashboard/login"
    assert 'method="post"' in response.text and 'type="password"' in response.text
    assert "data-figure" not in response.text
    assert (await client.get("/dashboard/data.json")).status_code == 401


async def test_an_admin_logs_in_and_sees_the_figures(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    response = await log_in(client, tokens.admin)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    page = await client.get("/dashboard")
    assert page.status_code == 200 and 'data-figure="stats.archived_sessions"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert (await client.get("/dashboard/data.json")).json()["stats"]["archived_sessions"] == 7


def cookie_header(response: httpx.Response, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


async def test_the_session_cookie_is_httponly_strict_short_and_scoped(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    form = await client.get("/dashboard/login")
    csrf = cookie_header(form, CSRF_COOKIE).lower()
    assert "httponly" in csrf and "samesite=strict" in csrf and "path=/dashboard" in csrf
    login = await client.post(
        "/dashboard/login", data={"token": tokens.admin, "csrf": csrf_of(form.text)}
    )
    header = cookie_header(login, SESSION_COOKIE).lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/dashboard" in header
    assert "max-age=600" in header and "secure" not in header  # plain HTTP here
    assert tokens.admin.lower() not in header  # the token is not the cookie


async def test_a_users_token_and_an_unknown_token_are_refused(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    refused = await log_in(client, tokens.user)
    assert refused.status_code == 403 and "not an admin" in refused.text
    assert SESSION_COOKIE not in client.cookies
    unknown = await log_in(client, "not-a-token")
    assert unknown.status_code == 401 and "Unknown token" in unknown.text
    assert (await client.get("/dashboard")).status_code == 303


async def test_a_login_without_the_forms_csrf_token_or_from_elsewhere_is_refused(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await client.get("/dashboard/login")  # the CSRF cookie, but not the form's token
    bare = await client.post("/dashboard/login", data={"token": tokens.admin})
    assert bare.status_code == 403
    forged = await client.post("/dashboard/login", data={"token": tokens.admin, "csrf": "x"})
    assert forged.status_code == 403
    form = await client.get("/dashboard/login")
    elsewhere = await client.post(
        "/dashboard/login",
        data={"token": tokens.admin, "csrf": csrf_of(form.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403 and SESSION_COOKIE not in client.cookies


async def test_a_forged_or_expired_cookie_is_refused(
    client: httpx.AsyncClient, tokens: Tokens, clock: list[float]
) -> None:
    await log_in(client, tokens.admin)
    good = client.cookies[SESSION_COOKIE]
    body, _ = good.split(".")
    client.cookies.set(SESSION_COOKIE, f"{body}.AAAA", path="/dashboard")
    assert (await client.get("/dashboard")).status_code == 303
    client.cookies.set(SESSION_COOKIE, good, path="/dashboard")
    assert (await client.get("/dashboard")).status_code == 200
    clock[0] += 601
    assert (await client.get("/dashboard")).status_code == 303


async def test_logout_ends_the_session_on_the_server_too(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await log_in(client, tokens.admin)
    stolen = client.cookies[SESSION_COOKIE]
    page = await client.get("/dashboard")
    no_csrf = await client.post("/dashboard/logout", data={})
    assert no_csrf.status_code == 303 and (await client.get("/dashboard")).status_code == 200
    out = await client.post("/dashboard/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert "max-age=0" in cookie_header(out, SESSION_COOKIE).lower()
    client.cookies.set(SESSION_COOKIE, stolen, path="/dashboard")  # a copy kept elsewhere
    assert (await client.get("/dashboard")).status_code == 303


async def test_revoking_or_demoting_the_token_ends_its_sessions(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await log_in(client, tokens.admin)
    assert (await client.get("/dashboard")).status_code == 200
    admin = next(e for e in tokens.file.entries if e.role == "admin")
    tokens.file.entries.remove(admin)
    assert (await client.get("/dashboard")).status_code == 303


async def test_a_watched_token_file_works_as_the_servers_does(
    analytics: SessionAnalytics, tokens: Tokens
) -> None:
    app = Starlette(
        routes=dashboard_routes(analytics, AdminLogin(WatchedTokenFile.load(tokens.path)))
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        assert (await log_in(http, tokens.admin)).status_code == 303
        assert (await http.get("/dashboard")).status_code == 200


async def test_the_token_is_in_no_url_and_no_log_record(
    client: httpx.AsyncClient, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    urls: list[str] = []
    client.event_hooks["request"] = [lambda request: _record(urls, request)]
    caplog.set_level(logging.DEBUG)
    await log_in(client, tokens.user)
    await log_in(client, tokens.admin)
    await client.get("/dashboard", follow_redirects=True)
    assert urls and not [u for u in urls if tokens.admin in u or tokens.user in u]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert tokens.admin not in logged and tokens.user not in logged


async def _record(urls: list[str], request: httpx.Request) -> None:
    urls.append(str(request.url))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("days=abc", "days"),
        ("days=0", "days"),
        ("days=367", "days"),
        ("type=bonds", "session_type"),
        ("user=" + "x" * 256, "user_id"),
        ("refresh=1", "refresh"),
        ("refresh=soon", "refresh"),
    ],
)
async def test_bad_filters_are_a_400_naming_the_field(
    client: httpx.AsyncClient, tokens: Tokens, query: str, field: str
) -> None:
    await log_in(client, tokens.admin)
    page = await client.get(f"/dashboard?{query}")
    assert page.status_code == 400 and field in page.text
    assert page.headers["content-type"].startswith("text/plain")
    data = await client.get(f"/dashboard/data.json?{query}")
    assert data.status_code == 400 and data.json()["field"] == field
