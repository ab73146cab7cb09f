"""The dashboard's HTTP routes, on ``fiml serve --http`` and on ``fiml dashboard``.

Two ways to be let in, one page:

- :class:`AdminLogin` (``fiml serve --http``): admins of the token file log in with their
  token (:mod:`fiml.dashboard.auth`); anyone else gets the login form.
- :class:`LocalViewer` (``fiml dashboard``): the server listens on the loopback interface
  only and lets in connections from the user running it (on Linux, the peer's uid is read
  from the kernel's socket table; see :mod:`fiml.dashboard.local`), with no token at all.

Routes: ``GET /dashboard`` (the page), ``GET /dashboard/data.json`` (the same figures as
JSON), ``GET``/``POST /dashboard/login`` and ``POST /dashboard/logout``. Every response
is ``no-store`` with a Content-Security-Policy that allows nothing but the page's own
nonce-bearing style and script, and forbids framing.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from fiml.core.errors import InvalidInputError
from fiml.dashboard.auth import CSRF_COOKIE, SESSION_COOKIE, SessionSigner, TokenSourceLike
from fiml.dashboard.page import (
    REFRESH_RANGE,
    REFRESH_SECONDS,
    Filters,
    dashboard_page,
    login_page,
)
from fiml.sessions.analytics import SessionAnalytics

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["PATH", "AdminLogin", "Gate", "LocalViewer", "add_dashboard", "dashboard_routes"]

PATH = "/dashboard"
_MAX_FORM_BYTES = 4096
Endpoint = Callable[[Request], Awaitable[Response]]


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "img-src 'self'; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",  # "no-referrer" makes forms send Origin: null
    }


def _html(body_of: Callable[[str], str], *, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(body_of(nonce), status_code=status, headers=_headers(nonce))


class Gate(Protocol):
    """Decides who sees the dashboard, and runs its login and logout."""

    def viewer(self, request: Request) -> str | None:
        """The user a request is shown the dashboard as, or None (not let in)."""
        ...

    def logout_csrf(self, request: Request) -> str | None:
        """The CSRF token of the page's logout form, None when there is no login."""
        ...

    def refused(self, request: Request) -> Response:
        """What a request that is not let in gets."""
        ...

    async def login_form(self, request: Request) -> Response:
        """``GET /dashboard/login``."""
        ...

    async def login(self, request: Request) -> Response:
        """``POST /dashboard/login``."""
        ...

    async def logout(self, request: Request) -> Response:
        """``POST /dashboard/logout``."""
        ...


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form's fields; anything else (or anything large) reads as empty."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), max_num_fields=8))


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent by older browsers on same-origin posts; the CSRF token holds
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


class AdminLogin:
    """Admins of the token file, logged in through the form (:mod:`fiml.dashboard.auth`)."""

    def __init__(self, tokens: TokenSourceLike, signer: SessionSigner | None = None) -> None:
        self.tokens = tokens
        self.signer = signer or SessionSigner()

    def viewer(self, request: Request) -> str | None:
        session = self.signer.read(request.cookies.get(SESSION_COOKIE), self.tokens.current())
        return None if session is None else session.user_id

    def logout_csrf(self, request: Request) -> str | None:
        return self.signer.csrf_token(request.cookies.get(SESSION_COOKIE, ""))

    def refused(self, request: Request) -> Response:
        return RedirectResponse(
            f"{PATH}/login", status_code=303, headers={"Cache-Control": "no-store"}
        )

    def _login_page(self, request: Request, *, error: str | None, status: int) -> Response:
        csrf_cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        csrf = self.signer.csrf_token(csrf_cookie)
        response = _html(
            lambda nonce: login_page(csrf=csrf, error=error, nonce=nonce), status=status
        )
        self._set_cookie(request, response, CSRF_COOKIE, csrf_cookie, max_age=None)
        return response

    def _set_cookie(
        self, request: Request, response: Response, name: str, value: str, *, max_age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    async def login_form(self, request: Request) -> Response:
        if self.viewer(request) is not None:
            return RedirectResponse(PATH, status_code=303)
        return self._login_page(request, error=None, status=200)

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if not _same_origin(request) or not self.signer.csrf_ok(
            request.cookies.get(CSRF_COOKIE), form.get("csrf")
        ):
            return self._login_page(
                request, error="The form expired; please log in again.", status=403
            )
        entry = self.tokens.current().match(form.get("token", "").strip())
        if entry is None:
            return self._login_page(request, error="Unknown token.", status=401)
        if entry.role != "admin":
            return self._login_page(
                request,
                error="This token is not an admin's: the dashboard is for admins.",
                status=403,
            )
        response = RedirectResponse(PATH, status_code=303, headers={"Cache-Control": "no-store"})
        self._set_cookie(
            request,
            response,
            SESSION_COOKIE,
            self.signer.issue(entry),
            max_age=int(self.signer.lifetime_seconds),
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        cookie = request.cookies.get(SESSION_COOKIE)
        session = self.signer.read(cookie, self.tokens.current())
        if session is None or not self.signer.csrf_ok(cookie, form.get("csrf")):
            return self.refused(request)
        self.signer.end(session)
        response = RedirectResponse(f"{PATH}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PATH, httponly=True, samesite="strict")
        return response


class LocalViewer:
    """The user running ``fiml dashboard``, on a loopback-only server; no login."""

    def __init__(self, user_id: str, allow: Callable[[Request], bool]) -> None:
        self.user_id = user_id
        self.allow = allow

    def viewer(self, request: Request) -> str | None:
        return self.user_id if self.allow(request) else None

    def logout_csrf(self, request: Request) -> str | None:
        return None

    def refused(self, request: Request) -> Response:
        return Response("Only the user who ran fiml dashboard may see it.\n", status_code=403)

    async def login_form(self, request: Request) -> Response:
        return RedirectResponse(PATH, status_code=303)

    async def login(self, request: Request) -> Response:
        return RedirectResponse(PATH, status_code=303)

    async def logout(self, request: Request) -> Response:
        return RedirectResponse(PATH, status_code=303)


def _filters(request: Request) -> Filters:
    """The filters from the query string; a bad value is an InvalidInputError naming it."""
    params = request.query_params
    raw_days = params.get("days", "30")
    try:
        days = int(raw_days)
    except ValueError:
        raise InvalidInputError("days", raw_days, "must be a whole number of days") from None
    raw_refresh = params.get("refresh", str(REFRESH_SECONDS))
    low, high = REFRESH_RANGE
    try:
        refresh = int(raw_refresh)
    except ValueError:
        refresh = 0
    if not low <= refresh <= high:
        raise InvalidInputError(
            "refresh", raw_refresh, f"must be a whole number of seconds from {low} to {high}"
        )
    return Filters(
        days=days,
        session_type=params.get("type") or None,
        user_id=params.get("user") or None,
        refresh_seconds=refresh,
    )


async def _figures(analytics: SessionAnalytics, filters: Filters) -> dict[str, Any]:
    stats = await analytics.get_session_stats(
        user_id=filters.user_id, session_type=filters.session_type, days=filters.days
    )
    series = await analytics.get_session_series(
        user_id=filters.user_id, session_type=filters.session_type, days=filters.days
    )
    return {"stats": stats, "series": series}


def dashboard_routes(analytics: SessionAnalytics, gate: Gate) -> list[Route]:
    """The dashboard's routes over ``analytics``, letting in whom ``gate`` lets in."""

    async def page(request: Request) -> Response:
        user = gate.viewer(request)
        if user is None:
            return gate.refused(request)
        try:
            filters = _filters(request)
            figures = await _figures(analytics, filters)
        except InvalidInputError as exc:
            return PlainTextResponse(
                f"{exc}\n", status_code=400, headers={"Cache-Control": "no-store"}
            )
        now = analytics.store.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        csrf = gate.logout_csrf(request)
        return _html(
            lambda nonce: dashboard_page(
                figures["stats"],
                figures["series"],
                filters=filters,
                user_id=user,
                generated_at=now,
                nonce=nonce,
                logout_csrf=csrf,
            )
        )

    async def data(request: Request) -> Response:
        if gate.viewer(request) is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        try:
            figures = await _figures(analytics, _filters(request))
        except InvalidInputError as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        return JSONResponse(figures, headers={"Cache-Control": "no-store"})

    return [
        Route(PATH, page, methods=["GET"]),
        Route(f"{PATH}/data.json", data, methods=["GET"]),
        Route(f"{PATH}/login", gate.login_form, methods=["GET"]),
        Route(f"{PATH}/login", gate.login, methods=["POST"]),
        Route(f"{PATH}/logout", gate.logout, methods=["POST"]),
    ]


def add_dashboard(server: MCPServer, analytics: SessionAnalytics, tokens: TokenSourceLike) -> None:
    """Serve the dashboard on ``server``'s HTTP app, for the admins of ``tokens``.

    The routes are the server's custom routes: the SDK leaves them to their own checks
    (the bearer tokens of ``/mcp`` do not apply), which :class:`AdminLogin` makes.
    """
    for route in dashboard_routes(analytics, AdminLogin(tokens)):
        server.custom_route(route.path, methods=sorted(route.methods or ()))(route.endpoint)
