"""Building the MCP server from its dependencies, and running it over stdio or HTTP.

:func:`build_server` takes everything explicitly (a store, a market-data service, who the
caller is) and holds no global state, so tests and embedders can build as many servers as
they like. :func:`run_server` builds the dependencies from the settings and serves:

- ``stdio`` (the default): one local user, ``FIML_USER`` or the OS user, over the SDK's
  stdio transport (``MCPServer.run_stdio_async``);
- ``http``: streamable HTTP at ``/mcp`` with bearer tokens from a token file; with
  ``stateless=True`` no MCP session lives in the process, so several processes can share
  Redis and PostgreSQL behind a load balancer. Analysis sessions never depend on the
  transport's own session.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from fiml import __version__
from fiml.core.audit import write_audit_to
from fiml.core.config import Settings
from fiml.core.errors import ConfigurationError
from fiml.core.logs import configure_logging
from fiml.core.metrics import enable_metrics
from fiml.core.redis_client import open_redis
from fiml.core.tracing import configure_tracing
from fiml.mcp.auth import BearerTokenIdentity, IdentityResolver, StaticIdentity, local_identity
from fiml.mcp.body_deadline import BodyDeadline
from fiml.mcp.fair_share import FairShare, FairShareLimits
from fiml.mcp.listen_bus import ListenBus, SubscribeCapability
from fiml.mcp.start_gate import StartGate, serve_while_starting

# What the tools use (the store, SQLAlchemy, the market-data clients, the dashboard) is
# imported inside the functions that build it: over stdio the server answers `initialize`
# before it has loaded them (fiml.mcp.start_gate); tests/mcp/test_quick_start.py checks it.
if TYPE_CHECKING:
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.context import ServerMiddleware
    from starlette.types import ASGIApp

    from fiml.core.redis_client import RedisClient
    from fiml.market.service import MarketData
    from fiml.mcp.analytics_tool import StatsSource
    from fiml.mcp.oauth import CombinedVerifier, OAuthConfig
    from fiml.mcp.ops_routes import OpsEndpoints
    from fiml.sessions.scheduler import JobScheduler
    from fiml.sessions.store import SessionStore

__all__ = [
    "MCP_PATH",
    "Transport",
    "background_jobs",
    "build_server",
    "open_market",
    "run_server",
    "serve",
    "serve_http",
    "serve_stdio",
]

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
"""Where the HTTP transport serves MCP."""

Transport = Literal["stdio", "http"]

_SDK_TRANSPORT_LOGGER = "mcp.server.streamable_http"

INSTRUCTIONS = """\
Market data with analysis sessions. Open a session with create-analysis-session, pass its \
session_id to search-by-symbol and search-by-coin so every query is remembered, and read \
the session's accumulated context from each result or from get-session-info. Close the \
session when the analysis is done."""


def build_server(
    *,
    store: SessionStore,
    market: MarketData,
    identity: IdentityResolver,
    stats: StatsSource | None = None,
    token_verifier: TokenVerifier | None = None,
    public_url: str = "http://127.0.0.1:8000",
    oauth: OAuthConfig | None = None,
    resource_url: str | None = None,
    legacy_subscriptions: bool = True,
) -> MCPServer:
    """An MCP server with every FIML tool and the session resource.

    ``store`` must be initialized and ``market`` open while the server runs. ``identity``
    says who each request comes from; with ``token_verifier`` the HTTP transport demands
    a valid bearer token on every request (``identity`` is then usually
    :class:`~fiml.mcp.auth.BearerTokenIdentity`). ``stats`` computes analytics; by
    default :class:`~fiml.sessions.analytics.SessionAnalytics` on ``store``. With ``oauth``
    the server is an OAuth 2.1 resource server for ``resource_url`` (default: ``public_url``
    and :data:`MCP_PATH`). ``legacy_subscriptions``: serve 2025 clients'
    ``resources/subscribe``, which needs a connection that outlives a request (so not
    stateless HTTP); 2026 clients' ``subscriptions/listen`` streams are served anyway.
    """
    from fiml.mcp.toolset import register_tools, session_middleware

    auth = _auth_settings(token_verifier, public_url, oauth, resource_url)
    middleware = session_middleware(store, identity, legacy_subscriptions=legacy_subscriptions)
    server = _new_server(
        token_verifier=token_verifier,
        auth=auth,
        middleware=middleware,
        legacy_subscriptions=legacy_subscriptions,
    )
    register_tools(server, store=store, market=market, identity=identity, stats=stats)
    return server


def _new_server(
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    middleware: Sequence[ServerMiddleware[Any]] = (),
    legacy_subscriptions: bool = True,
) -> MCPServer:
    """FIML's MCP server, without its tools yet. Its ``initialize`` answer offers
    ``resources/subscribe`` with ``legacy_subscriptions`` (:mod:`fiml.mcp.subscriptions`:
    the handshake may be answered before the rest of the middleware is there)."""
    first: list[ServerMiddleware[Any]] = [SubscribeCapability()] if legacy_subscriptions else []
    return MCPServer(
        name="fiml",
        title="FIML market data with analysis sessions",
        instructions=INSTRUCTIONS,
        version=__version__,
        token_verifier=token_verifier,
        auth=auth,
        middleware=[*first, *middleware],
        subscriptions=ListenBus(),
    )


@asynccontextmanager
async def open_market(
    settings: Settings, redis: RedisClient | None = None
) -> AsyncIterator[MarketData]:
    """The market-data service the settings ask for, closed after; live quotes are cached in
    ``redis`` (the process's one client, closed by whoever opened it) when given."""
    from fiml.market.service import MarketData

    if settings.market_provider == "offline":
        async with MarketData.offline() as market:
            yield market
        return
    async with MarketData.live(
        redis,
        redis_key_prefix=settings.redis_key_prefix,
        redis_timeout_seconds=settings.redis_timeout_seconds,
    ) as market:
        yield market


@asynccontextmanager
async def background_jobs(
    store: SessionStore, *, enabled: bool, redis: RedisClient | None = None
) -> AsyncIterator[JobScheduler | None]:
    """Run the session jobs (cleanup, retention, metrics) in process while the block runs;
    yields the scheduler (None when not ``enabled``).

    With ``redis`` (the process's one client), a Redis lock per job keeps several processes
    from repeating each other's work (the jobs are idempotent anyway).
    """
    if not enabled:
        yield None
        return
    from fiml.sessions.joblock import RedisJobLock
    from fiml.sessions.scheduler import JobScheduler

    lock = None if redis is None else RedisJobLock(redis, settings=store.settings)
    async with JobScheduler.for_store(store, lock=lock) as scheduler:
        yield scheduler


def _http_auth(settings: Settings, tokens_file: Path | None) -> CombinedVerifier:
    from fiml.mcp.auth import HashedTokenVerifier
    from fiml.mcp.oauth import CombinedVerifier, JwtVerifier, OAuthConfig
    from fiml.mcp.token_watch import WatchedTokenFile

    path = tokens_file or settings.mcp_tokens_file
    oauth = OAuthConfig.from_settings(settings)
    if path is None and oauth is None:
        raise ConfigurationError(
            "the HTTP transport needs a token file (pass --tokens or set FIML_MCP_TOKENS_FILE) "
            "or an identity provider (FIML_OAUTH_ISSUER)"
        )
    scopes = () if oauth is None else oauth.scopes
    tokens = (
        None if path is None else HashedTokenVerifier(WatchedTokenFile.load(path), scopes=scopes)
    )
    return CombinedVerifier(tokens, None if oauth is None else JwtVerifier(oauth))


def _caller(
    settings: Settings, transport: Transport, tokens_file: Path | None
) -> tuple[IdentityResolver, CombinedVerifier | None]:
    """Who each request comes from, and the HTTP transport's token check."""
    if transport == "http":
        return BearerTokenIdentity(), _http_auth(settings, tokens_file)
    return StaticIdentity(local_identity(settings)), None


def _auth_settings(
    verifier: TokenVerifier | None, public_url: str, oauth: OAuthConfig | None, resource: str | None
) -> AuthSettings | None:
    """The SDK's auth settings: with an identity provider, a resource server that publishes
    RFC 9728 metadata and requires the configured scopes (the audience is checked by
    :class:`~fiml.mcp.oauth.JwtVerifier`, so the SDK's resource-indicator check is off)."""
    if verifier is None:
        return None
    if oauth is None:
        return AuthSettings(issuer_url=public_url, resource_server_url=None)
    return AuthSettings(
        issuer_url=oauth.issuer,
        resource_server_url=resource or f"{public_url}{MCP_PATH}",
        required_scopes=list(oauth.scopes),
        validate_token_resource=False,
    )


def _log_warning(line: str) -> None:
    logger.warning("%s", line)


async def serve(
    settings: Settings,
    *,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    stateless: bool = False,
    tokens_file: Path | None = None,
    jobs: bool | None = None,
    warn: Callable[[str], None] = _log_warning,
    json_response: bool = True,
    access_log: bool = False,
) -> None:
    """Serve MCP until cancelled (stdio: until the client closes the pipe).

    ``json_response`` and ``access_log`` shape the HTTP transport (:func:`serve_http`).
    ``jobs``: run the session jobs in process; by default, when no Celery broker is set.
    The process opens one Redis client (with ``settings.redis_url``) and lends it to the
    session store, the quote cache and the job locks. As it opens them, ``warn`` gets one
    line when that Redis would lose the active sessions on a restart (default: logged).
    Over stdio alone, the server answers ``initialize`` while it opens them and holds
    every other request until it has (:mod:`fiml.mcp.start_gate`); a failure to open
    them ends it with that error, as before serving.
    Over HTTP, and over stdio with the ``metrics_port`` setting, the process counts
    Prometheus metrics and serves /metrics, /healthz and /readyz
    (:class:`~fiml.mcp.ops_routes.OpsEndpoints`). With the standard ``OTEL_*`` variables
    set, it exports traces over OTLP (:func:`~fiml.core.tracing.configure_tracing`).
    """
    if transport not in ("stdio", "http"):
        raise ConfigurationError(f"unknown transport {transport!r}; use 'stdio' or 'http'")
    run_jobs = settings.celery_broker_url is None if jobs is None else jobs
    if transport == "http" or settings.metrics_port is not None:
        enable_metrics()
    configure_tracing()
    metrics_port = settings.metrics_port
    if transport == "stdio" and metrics_port is None:
        await _serve_stdio_while_starting(settings, jobs=run_jobs, warn=warn)
        return
    identity, verifier = _caller(settings, transport, tokens_file)
    async with _running(settings, jobs=run_jobs, warn=warn) as running:
        from fiml.mcp.oauth import OAuthConfig
        from fiml.mcp.ops_routes import OpsEndpoints

        store = running.store
        server = build_server(
            store=store,
            market=running.market,
            identity=identity,
            token_verifier=verifier,
            public_url=f"http://{host}:{port}",
            oauth=OAuthConfig.from_settings(settings) if verifier is not None else None,
            resource_url=settings.oauth_resource_url,
            legacy_subscriptions=not (transport == "http" and stateless),
        )
        ops = OpsEndpoints(
            store, redis=running.redis, scheduler=running.scheduler, jobs_in_process=run_jobs
        )
        if metrics_port is not None and transport == "stdio":
            address = (settings.metrics_host, metrics_port)
            await serve_stdio(server, ops=ops, ops_address=address)
            return
        ops.register(server)
        if verifier is not None and verifier.tokens is not None:
            from fiml.dashboard import add_dashboard
            from fiml.sessions.analytics import SessionAnalytics

            # The admins' analytics dashboard, at /dashboard: admins of the token file
            # log in with their token (an OAuth-only server has no dashboard login).
            add_dashboard(server, SessionAnalytics(store), verifier.tokens.tokens)
        await serve_http(
            server,
            host=host,
            port=port,
            stateless=stateless,
            json_response=json_response,
            access_log=access_log,
            settings=settings,
            verifier=verifier,
        )


@dataclass(frozen=True)
class _Running:
    """What a serving process has open: its one Redis client (or None), the session
    store, the market data and the in-process job scheduler (or None)."""

    redis: RedisClient | None
    store: SessionStore
    market: MarketData
    scheduler: JobScheduler | None


@asynccontextmanager
async def _running(
    settings: Settings, *, jobs: bool, warn: Callable[[str], None]
) -> AsyncIterator[_Running]:
    """Open what the tools use, for as long as the block runs; see :func:`serve`."""
    from fiml.sessions.backends import build_backends
    from fiml.sessions.backends.redis_persistence import persistence_warning
    from fiml.sessions.store import SessionStore

    async with open_redis(settings.redis_url, settings) as redis:
        if (warning := await persistence_warning(settings, redis)) is not None:
            warn(warning)
        backend, archive = build_backends(settings, redis=redis)
        async with (
            SessionStore(settings, backend=backend, archive=archive) as store,
            open_market(settings, redis) as market,
            background_jobs(store, enabled=jobs, redis=redis) as scheduler,
        ):
            yield _Running(redis, store, market, scheduler)


_SERVING_MODULES = (
    "fiml.mcp.toolset",
    "fiml.sessions.backends",
    "fiml.sessions.backends.redis_persistence",
    "fiml.sessions.joblock",
    "fiml.sessions.scheduler",
)
"""What :func:`_running` and the tools import: over stdio, in a worker thread while the
event loop answers ``initialize`` (imports block the thread that runs them)."""


def _import_serving_modules() -> None:
    for module in _SERVING_MODULES:
        importlib.import_module(module)


async def _serve_stdio_while_starting(
    settings: Settings, *, jobs: bool, warn: Callable[[str], None]
) -> None:
    """Serve stdio at once, on a server whose requests but ``initialize`` wait until the
    store, the market data and the tools are there (:mod:`fiml.mcp.start_gate`)."""
    identity = StaticIdentity(local_identity(settings))
    gate = StartGate()
    server = _new_server(middleware=[gate])

    @asynccontextmanager
    async def start() -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_import_serving_modules)
        from fiml.mcp import toolset

        async with _running(settings, jobs=jobs, warn=warn) as running:
            toolset.register_tools(
                server, store=running.store, market=running.market, identity=identity
            )
            gate.then(toolset.session_middleware(running.store, identity))
            yield

    await serve_while_starting(lambda: serve_stdio(server), start, gate)


async def serve_http(
    server: MCPServer,
    *,
    host: str,
    port: int,
    stateless: bool,
    json_response: bool = True,
    access_log: bool = False,
    settings: Settings | None = None,
    verifier: TokenVerifier | None = None,
) -> None:
    """Serve ``server`` over streamable HTTP at :data:`MCP_PATH` on uvicorn until cancelled.

    ``settings`` give the transport's limits (the ``http_*`` settings; default: their
    defaults): with ``verifier``, the one the SDK authenticates with, each user's fair share
    (:class:`~fiml.mcp.fair_share.FairShare`); the body deadline
    (:class:`~fiml.mcp.body_deadline.BodyDeadline`), keep-alive timeout and connection cap;
    the header deadline, in front of uvicorn (:class:`~fiml.mcp.head_deadline.HeadDeadline`).

    ``json_response``: answer each POST with one JSON body instead of a server-sent event
    stream; FIML's tools send no progress notifications, so the stream would only carry
    the answer, at the cost of an event-stream response and its tasks per call.
    ``access_log``: one log line per request, off by default because formatting and
    writing it is a noticeable part of a call's CPU; a proxy in front usually logs anyway.
    uvicorn parses HTTP with httptools when it is installed (the ``http`` extra).
    Stateless, the SDK's transport logs "Terminating session: None" at INFO at the end of
    every request; its logger is raised to WARNING so that line is not paid for per call.
    """
    import uvicorn

    if stateless:
        logging.getLogger(_SDK_TRANSPORT_LOGGER).setLevel(logging.WARNING)

    limits = settings or Settings()
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=stateless,
        json_response=json_response,
        host=host,
        session_idle_timeout=limits.http_session_idle_seconds,
        max_sessions=limits.http_max_sessions,
    )
    if verifier is not None:
        app = FairShare(app, verifier, FairShareLimits.from_settings(limits))

    def config(
        *,
        host: str = host,
        port: int = port,
        uds: str | None = None,
        forwarded_allow_ips: str | None = None,
    ) -> uvicorn.Config:
        return uvicorn.Config(
            BodyDeadline(app, limits.http_body_timeout_seconds),
            log_level="info",
            access_log=access_log,
            lifespan="on",
            timeout_keep_alive=limits.http_keep_alive_seconds,
            limit_concurrency=limits.http_max_connections,
            host=host,
            port=port,
            uds=uds,
            forwarded_allow_ips=forwarded_allow_ips,
        )

    if limits.http_header_timeout_seconds == 0:
        await uvicorn.Server(config()).serve()
        return
    from fiml.mcp.head_deadline import HeadDeadline

    await HeadDeadline.from_settings(limits).serve(config, host=host, port=port)


async def serve_stdio(
    server: MCPServer,
    *,
    ops: OpsEndpoints | None = None,
    ops_address: tuple[str, int] | None = None,
) -> None:
    """Serve ``server`` on the SDK's stdio transport until the client closes stdin.

    While serving, the SDK points descriptor 1 at stderr and writes the protocol to a
    private duplicate; on exit it points 1 back at the wire. A line a tool ``print()``-ed
    into a block-buffered ``sys.stdout`` would be flushed after that, onto the wire, so
    ``sys.stdout`` is made line-buffered first: each printed line reaches stderr at once.

    The SDK's transport leaves a line that is no JSON-RPC message unanswered (it logs it
    at debug level and reads on), so a client that sent one waits for its own timeout.
    That is the SDK's to fix; FIML keeps no transport of its own around it.

    With ``ops`` and ``ops_address`` (host, port), the operator's endpoints (/metrics,
    /healthz, /readyz) are served there for as long as stdio is.
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    if ops is None or ops_address is None:
        await server.run_stdio_async()
        return
    import uvicorn

    host, port = ops_address
    config = uvicorn.Config(ops.app(), host=host, port=port, log_level="warning")
    ops_server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(ops_server.serve)
        await server.run_stdio_async()
        ops_server.should_exit = True


def run_server(
    settings: Settings,
    *,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    stateless: bool = False,
    tokens_file: Path | None = None,
    jobs: bool | None = None,
    warn: Callable[[str], None] = _log_warning,
    json_response: bool = True,
    access_log: bool = False,
) -> None:
    """Serve MCP in the foreground; logs go to stderr (stdout belongs to stdio MCP).

    See :func:`serve` for the arguments. Over HTTP the event loop is uvloop's when uvloop
    is installed (the ``http`` extra): it spends less CPU per request than asyncio's own.
    """
    configure_logging(settings.log_format, tool_calls=settings.log_tool_calls)
    if settings.audit_log_file is not None:
        write_audit_to(settings.audit_log_file)
    anyio.run(
        functools.partial(
            serve,
            settings,
            transport=transport,
            host=host,
            port=port,
            stateless=stateless,
            tokens_file=tokens_file,
            jobs=jobs,
            warn=warn,
            json_response=json_response,
            access_log=access_log,
        ),
        backend_options={"use_uvloop": transport == "http" and _uvloop_installed()},
    )


def _uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None
