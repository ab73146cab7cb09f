"""HTTP plumbing shared by the live providers: one client shape, one way to report failure.

Every way a request can go wrong (timeout, refused connection, error status, a body that is not
JSON) becomes a :class:`~fiml.core.errors.ProviderUnavailableError` whose reason says which.
Every request is made by :func:`fetch`, which is also where it becomes a span with tracing on
(``fiml.provider <name>``, :mod:`fiml.core.tracing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from fiml.core import tracing
from fiml.core.errors import InvalidInputError, ProviderUnavailableError

__all__ = [
    "build_client",
    "decode_json",
    "fetch",
    "status_reason",
    "unusable_body",
]

_STATUS_HINTS = {
    403: "access refused",
    418: "IP banned after too many requests",
    429: "rate limited",
    451: "refused from this location",
}


def build_client(*, timeout: float, headers: Mapping[str, str]) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with one ``timeout`` (seconds) for every phase."""
    if not timeout > 0:
        raise InvalidInputError("timeout", timeout, "must be a positive number of seconds")
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), headers=dict(headers))


async def fetch(
    client: httpx.AsyncClient, url: str, *, provider: str, params: Mapping[str, str] | None = None
) -> httpx.Response:
    """GET ``url``; a timeout or transport failure raises ``ProviderUnavailableError``.

    With tracing on the request is a client span whose outcome is ``ok``, ``http_error``
    (a status of 400 or more, its ``error.type``), ``unavailable`` (no response) or
    ``internal``.
    """
    host = httpx.URL(url).host
    span = tracing.start(
        tracing.PROVIDER_SPAN,
        provider,
        {"fiml.provider": provider, "http.request.method": "GET", "server.address": host},
        client=True,
    )
    if span is None:
        return await _get(client, url, host, provider=provider, params=params)
    try:
        response = await _get(client, url, host, provider=provider, params=params)
    except BaseException as exc:
        span.end(exc, "unavailable" if isinstance(exc, ProviderUnavailableError) else "internal")
        raise
    code = response.status_code
    failed = str(code) if code >= httpx.codes.BAD_REQUEST else None
    span.end(failed, "http_error" if failed else "ok", {"http.response.status_code": code})
    return response


async def _get(
    client: httpx.AsyncClient,
    url: str,
    host: str,
    *,
    provider: str,
    params: Mapping[str, str] | None,
) -> httpx.Response:
    try:
        return await client.get(url, params=params)
    except httpx.TimeoutException as exc:
        reason = f"request to {host} {_timeout_reason(client, exc)}"
        raise ProviderUnavailableError(provider, reason) from exc
    except httpx.HTTPError as exc:
        detail = str(exc) or type(exc).__name__
        raise ProviderUnavailableError(provider, f"request to {host} failed: {detail}") from exc


def decode_json(response: httpx.Response, *, provider: str) -> Any:
    """The parsed JSON body; a body that is not JSON raises ``ProviderUnavailableError``."""
    try:
        return response.json()
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise ProviderUnavailableError(
            provider, f"HTTP {response.status_code} response body is not valid JSON"
        ) from exc


def status_reason(response: httpx.Response) -> str:
    """A reason naming an unexpected status, e.g. ``unexpected HTTP 429 (rate limited)``."""
    code = response.status_code
    hint = _STATUS_HINTS.get(code) or ("server error" if code >= 500 else response.reason_phrase)
    return f"unexpected HTTP {code} ({hint})" if hint else f"unexpected HTTP {code}"


def unusable_body(provider: str, what: str, exc: ValidationError) -> ProviderUnavailableError:
    """The error for a body of the wrong shape, naming its first problem on one line.

    For example ``unexpected chart response: chart.result.0.meta.currency: Field required``.
    """
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = exc.error_count() - 1
    detail = f"{where}: {first['msg']}" + (f" (and {more} more)" if more else "")
    return ProviderUnavailableError(provider, f"{what}: {detail}")


def _timeout_reason(client: httpx.AsyncClient, exc: httpx.TimeoutException) -> str:
    limits = {
        httpx.ConnectTimeout: ("connecting", client.timeout.connect),
        httpx.ReadTimeout: ("waiting for the response", client.timeout.read),
        httpx.WriteTimeout: ("sending the request", client.timeout.write),
        httpx.PoolTimeout: ("waiting for a free connection", client.timeout.pool),
    }
    phase, seconds = limits.get(type(exc), ("waiting", None))
    if seconds is None:
        return f"timed out {phase}"
    return f"timed out after {seconds:g} s {phase}"
