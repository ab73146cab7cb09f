"""The one way FIML connects to Redis: redis-py's client on its blocking pool, from the settings.

A process that uses Redis for several things (the session tier, the quote cache, the job
locks, the persistence check) opens one client with :func:`open_redis` and hands it to each;
none of them builds a client of its own, so every Redis call of the process shares one pool,
one set of timeouts and one retry policy. :func:`redis_client` is the same client for a
single user, owning its pool (``RedisBackend.from_url``, tools and tests).

With ``settings.redis_cluster`` the client is redis-py's ``RedisCluster`` instead, found
from the one node ``redis_url`` names (:func:`cluster_client`); it keeps a pool per node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fiml.core.config import Settings
from fiml.core.errors import MissingDependencyError

if TYPE_CHECKING:
    from typing import TypeAlias

    from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

    RedisClient: TypeAlias = Redis | RedisCluster
    """Either client: the commands FIML sends are the same on both."""

__all__ = [
    "CLUSTER_CONNECTION_HEADROOM",
    "POOL_WAIT_SECONDS",
    "cluster_client",
    "open_redis",
    "redis_client",
    "redis_pool",
]

CLUSTER_CONNECTION_HEADROOM = 16
"""Connections per cluster node beyond ``redis_max_connections``: the session backend
queues its calls at ``redis_max_connections`` (a cluster node's pool fails a call that
finds it full instead of waiting), and the quote cache and job locks share the client."""

POOL_WAIT_SECONDS = 60.0
"""How long a call waits for a free connection when all of them are busy, before it fails."""


def redis_pool(
    url: str, settings: Settings, *, pool_wait: float = POOL_WAIT_SECONDS
) -> BlockingConnectionPool:
    """redis-py's blocking pool for ``url`` (``redis://``, ``rediss://`` or ``unix://``),
    replying with decoded strings, of up to ``settings.redis_max_connections``: a call that
    finds them all busy waits (``pool_wait`` seconds at most) instead of failing, so a burst
    of writers queues rather than errors. Connecting is bounded by
    ``settings.redis_timeout_seconds`` (``socket_connect_timeout``); each user bounds its
    calls as a whole by the same timeout. redis-py's ``socket_timeout`` is off (redis-py 8
    sets 5 s by default): with it, every send runs in a task of its own
    (``asyncio.wait_for``), an event-loop turn more per command (PING: 3 turns instead of 2,
    a MULTI/EXEC read 6 instead of 5), which took 22-34% more time per call in an
    interleaved run on a loaded two-core machine.

    By default commands are not retried (``settings.redis_retries`` is 0): a command whose
    reply was lost may have run, and running a write again is not harmless (an extension
    applied twice, a create that finds its own session and reports it taken). Nor is a
    health-check interval set by default (``settings.redis_health_check_interval_seconds``):
    its PING on a dead connection only fails without a retry. What keeps a connection left
    over from before a Redis restart from failing a call is the pool's check before it
    hands a connection out (``ensure_connection``): one the server closed, or that holds
    unread data, is reconnected. redis-py skips that check when Redis's maintenance
    notifications are on, which is its default on RESP3 (redis-py 8 speaks RESP3 unless
    told otherwise), so the client speaks RESP2 (``protocol=2``; a ``protocol`` in the URL
    overrides it, at that cost). A command that fails or is cancelled drops its connection,
    so no late reply reaches a later call.
    """
    try:
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff, NoBackoff
    except ImportError as exc:  # pragma: no cover - only without the redis extra
        raise MissingDependencyError("redis", "redis") from exc
    retries = settings.redis_retries
    return BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=pool_wait,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=None,  # each user bounds its calls (see above)
        retry=Retry(ExponentialBackoff() if retries else NoBackoff(), retries),
        health_check_interval=settings.redis_health_check_interval_seconds,
        protocol=2,
        decode_responses=True,
    )


def cluster_client(url: str, settings: Settings) -> RedisCluster:
    """redis-py's ``RedisCluster``, which learns the cluster from the node ``url`` names,
    with the same timeouts, retries, protocol and decoding as :func:`redis_pool` (see
    there). Its pool per node holds ``redis_max_connections`` plus
    :data:`CLUSTER_CONNECTION_HEADROOM` connections. redis-py follows MOVED and ASK
    redirections itself, and rereads the slot map after a node fails or a failover."""
    try:
        from redis.asyncio import RedisCluster
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff, NoBackoff
    except ImportError as exc:  # pragma: no cover - only without the redis extra
        raise MissingDependencyError("redis", "redis") from exc
    retries = settings.redis_retries
    return RedisCluster.from_url(
        url,
        max_connections=settings.redis_max_connections + CLUSTER_CONNECTION_HEADROOM,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=None,
        retry=Retry(ExponentialBackoff() if retries else NoBackoff(), retries),
        health_check_interval=settings.redis_health_check_interval_seconds,
        protocol=2,
        decode_responses=True,
    )


def _is_cluster(url: str, settings: Settings) -> bool:
    """Whether ``url`` is the cluster ``settings.redis_cluster`` speaks of: the sessions'
    Redis only (a Celery broker's Redis the job locks fall back to is a plain one)."""
    return settings.redis_cluster and url == settings.redis_url


def redis_client(
    url: str, settings: Settings, *, pool_wait: float = POOL_WAIT_SECONDS
) -> RedisClient:
    """A client on a :func:`redis_pool` of its own: closing the client closes the pool; a
    :func:`cluster_client` with ``settings.redis_cluster``."""
    if _is_cluster(url, settings):
        return cluster_client(url, settings)
    pool = redis_pool(url, settings, pool_wait=pool_wait)  # first: it checks redis is installed
    from redis.asyncio import Redis

    return Redis.from_pool(pool)


@asynccontextmanager
async def open_redis(url: str | None, settings: Settings) -> AsyncIterator[RedisClient | None]:
    """The process's one client for ``url`` (``None`` when there is no Redis), its pool
    closed when the block ends.

    The client is lent, not given: redis-py leaves a pool passed to ``Redis(connection_pool=)``
    to whoever made it, so a user that closes the client (``RedisBackend.close``) closes
    nothing the others still use.
    """
    if url is None:
        yield None
        return
    if _is_cluster(url, settings):  # a RedisCluster has no pool to lend: its users never close it
        cluster = cluster_client(url, settings)
        try:
            yield cluster
        finally:
            await cluster.aclose()
        return
    pool = redis_pool(url, settings)  # first: it checks redis is installed
    from redis.asyncio import Redis

    try:
        yield Redis(connection_pool=pool)
    finally:
        await pool.aclose()
