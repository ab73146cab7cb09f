"""One Redis client per server process, and one key prefix for every key FIML writes.

``serve`` opens one client (:func:`~fiml.core.redis_client.open_redis`) and lends it to the
session store, the quote cache and the job locks. Here the serving step is replaced by a
probe that looks at what the server was built with while it serves.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as redis
from mcp.server.mcpserver import MCPServer

import fiml.mcp.server
import fiml.mcp.toolset
from fiml.core.redis_client import open_redis
from fiml.market.cache import RedisQuoteCache
from fiml.market.service import MarketData
from fiml.mcp.server import serve
from fiml.sessions.backends import build_backends
from fiml.sessions.backends.redis import RedisBackend
from fiml.sessions.backends.redis_keys import RedisKeyspace
from fiml.sessions.joblock import RedisJobLock
from fiml.sessions.jobs import CLEANUP_JOB, run_cleanup
from fiml.sessions.store import SessionStore
from tests.conftest import settings_for
from tests.market.test_cache import make_quote
from tests.reliability.archive_checks import query

PREFIX = "elsewhere"


def _pools() -> set[int]:
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, redis.ConnectionPool)}


async def test_serve_opens_one_redis_pool_and_lends_it_to_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: redis.Redis
) -> None:
    settings = await settings_for("redis+postgres", tmp_path, redis_key_prefix=PREFIX)
    built: dict[str, Any] = {}
    registered = anyio.Event()
    register_tools = fiml.mcp.toolset.register_tools

    def recording_register(server: MCPServer, **parts: Any) -> None:
        built.update(parts)
        register_tools(server, **parts)
        registered.set()

    async def probe(_server: MCPServer) -> None:
        await registered.wait()  # over stdio the tools are registered while serving
        built["new_pools"] = _pools() - before
        await built["market"].cache.set("probe", make_quote())

    monkeypatch.setattr(fiml.mcp.toolset, "register_tools", recording_register)
    monkeypatch.setattr(fiml.mcp.server, "serve_stdio", probe)
    before = _pools()

    await serve(settings, jobs=True, warn=lambda _line: None)

    backend, cache = built["store"].backend, built["market"].cache
    assert isinstance(backend, RedisBackend) and isinstance(cache, RedisQuoteCache)
    assert isinstance(backend.redis, redis.Redis)
    assert built["new_pools"] == {id(backend.redis.connection_pool)}
    assert await raw.exists(f"{PREFIX}:quote:probe")


async def test_every_key_follows_the_one_prefix_setting(tmp_path: Path, raw: redis.Redis) -> None:
    settings = await settings_for("redis+postgres", tmp_path, redis_key_prefix=PREFIX)
    keys = RedisKeyspace(PREFIX)
    async with open_redis(settings.redis_url, settings) as client:
        assert client is not None
        backend, archive = build_backends(settings, redis=client)
        async with SessionStore(settings, backend=backend, archive=archive) as store:
            kept = await store.create_session(["AAPL"], "equity", user_id="u1")
            await store.append_query(kept.id, query(1))
            await store.update_state(kept.id, context={"leader": "AAPL"})
            done = await store.create_session(["MSFT"], "equity", user_id="u1")
            await store.close_session(done.id)
            async with RedisJobLock(client, settings=settings).hold(CLEANUP_JOB) as held:
                assert held and await raw.exists(keys.job_lock(CLEANUP_JOB))
                assert (await run_cleanup(store)).archived == 1
        market = MarketData.live(client, redis_key_prefix=PREFIX)
        async with market:
            await market.cache.set("equity:yahoo:AAPL:", make_quote())

    stored = set(await raw.keys("*"))
    assert stored == {
        keys.expiry_index(kept.id),
        keys.layout_marker,
        keys.shard_count_marker,
        keys.user_index("u1", kept.id),
        keys.user_asset_index("u1", "AAPL"),
        keys.user_asset_index("u1", "S1"),  # the tracked query's symbol
        *(key for key in keys.session_keys(kept.id) if key in stored),
        f"{PREFIX}:quote:equity:yahoo:AAPL:",
    }
    assert {keys.meta_key(kept.id), keys.session_keys(kept.id).context} <= stored
