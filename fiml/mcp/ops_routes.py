"""The operator's endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

``fiml serve --http`` serves them beside ``/mcp`` (registered with the SDK's
``MCPServer.custom_route``, so they need no bearer token: a probe or a Prometheus scraper
holds none, and they show no session's content); a stdio server serves them on the
``metrics_port`` setting (:meth:`OpsEndpoints.app`).

- ``/healthz``: 200 ``{"status": "ok"}`` while the process serves at all.
- ``/readyz``: 200 when every readiness check passes, else 503; the body is the report of
  :func:`fiml.sessions.health.check_readiness`.
- ``/metrics``: the Prometheus text exposition (:func:`fiml.core.metrics.exposition`), with
  the active sessions counted in the store for this scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fiml.core.errors import FimlError
from fiml.core.metrics import exposition, recorder
from fiml.sessions.health import DEFAULT_TIMEOUT_SECONDS, check_readiness
from fiml.sessions.models import SessionType
from fiml.sessions.scheduler import JobScheduler
from fiml.sessions.store import SessionStore

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["OpsEndpoints"]

Endpoint = Callable[[Request], Awaitable[Response]]

logger = logging.getLogger("fiml.ops")


class OpsEndpoints:
    """The three endpoints over one process's store, Redis client and scheduler."""

    def __init__(
        self,
        store: SessionStore,
        *,
        redis: RedisClient | None = None,
        scheduler: JobScheduler | None = None,
        jobs_in_process: bool = False,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.store = store
        self.redis = redis
        self.scheduler = scheduler
        self.jobs_in_process = jobs_in_process
        self.timeout = timeout

    async def healthz(self, _request: Request) -> Response:
        """The process answers."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        """200 with the report when ready, 503 with it when not."""
        report = await check_readiness(
            self.store,
            redis=self.redis,
            scheduler=self.scheduler,
            jobs_in_process=self.jobs_in_process,
            within_seconds=self.timeout,
        )
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    async def active_sessions(self) -> dict[str, int] | None:
        """Running sessions per type, counted in the store now; None when it cannot say."""
        now = self.store.now()
        try:
            async with asyncio.timeout(self.timeout):
                counts = await asyncio.gather(
                    *(
                        self.store.backend.count_active(now=now, session_type=kind.value)
                        for kind in SessionType
                    )
                )
        except (FimlError, TimeoutError) as exc:
            recorder().error(type(exc).__name__)
            logger.warning(
                "metrics scrape: the active sessions cannot be counted",
                extra={"event": "metrics.store_unreadable", "error": type(exc).__name__},
            )
            return None
        return {kind.value: n for kind, n in zip(SessionType, counts, strict=True)}

    async def metrics(self, _request: Request) -> Response:
        """The exposition; the gauge is left out of a scrape the store cannot answer."""
        body, content_type = exposition(await self.active_sessions())
        return Response(body, media_type=content_type)

    def register(self, server: MCPServer) -> None:
        """Serve the endpoints on ``server``'s HTTP app."""
        for path, endpoint in self._routes():
            server.custom_route(path, methods=["GET"], include_in_schema=False)(endpoint)

    def app(self) -> Starlette:
        """An ASGI app of the endpoints alone (for the metrics port)."""
        return Starlette(routes=[Route(p, e, methods=["GET"]) for p, e in self._routes()])

    def _routes(self) -> list[tuple[str, Endpoint]]:
        return [("/healthz", self.healthz), ("/readyz", self.readyz), ("/metrics", self.metrics)]
