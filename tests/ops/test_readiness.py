"""/readyz says not ready while Redis or PostgreSQL is away, and ready again once it is back.

The endpoints are served by :meth:`OpsEndpoints.app` through httpx's ASGI transport (the
routes ``fiml serve --http`` registers are the same endpoints; tests/ops/test_served.py
asks a real server). Redis is a private ``redis-server`` the test kills and starts again;
PostgreSQL is reached through a TCP proxy the test cuts (tests/reliability/services.py).
During the outage a tool call fails with a storage error, logged as ``storage.unavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from fiml.core.config import Settings
from fiml.core.redis_client import open_redis
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.mcp.ops_routes import OpsEndpoints
from fiml.sessions.backends import build_backends
from fiml.sessions.scheduler import JobScheduler
from fiml.sessions.store import SessionStore
from tests.conftest import require_postgres, reset_postgres
from tests.mcp.conftest import fails, new_session
from tests.reliability.services import PrivateRedis, TcpProxy, wait_until

BACK_SECONDS = 30


def quick(database_url: str, redis_url: str | None) -> Settings:
    """Settings whose calls to a service that went away fail within a second or two."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_timeout_seconds=1.0,
        database_timeout_seconds=2.0,
    )


@asynccontextmanager
async def probe(ops: OpsEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ops.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        yield client


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    answer = await client.get("/readyz")
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


async def ready_again(client: httpx.AsyncClient) -> None:
    async def ready() -> bool:
        return (await readiness(client))[0] == 200

    await wait_until(ready, seconds=BACK_SECONDS, interval=0.2)


def storage_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "storage.unavailable"]


async def test_a_redis_outage_reads_not_ready_then_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pg = await require_postgres()
    await reset_postgres(pg)
    async with PrivateRedis(tmp_path) as private:
        settings = quick(pg, private.url)
        async with open_redis(settings.redis_url, settings) as redis:
            backend, archive = build_backends(settings, redis=redis)
            async with (
                SessionStore(settings, backend=backend, archive=archive) as store,
                MarketData.offline() as market,
                probe(OpsEndpoints(store, redis=redis, timeout=3)) as client,
            ):
                server = build_server(
                    store=store, market=market, identity=StaticIdentity(Identity("al"))
                )
                async with Client(server) as agent:
                    sid = await new_session(agent)
                    status, body = await readiness(client)
                    assert status == 200 and body["ready"]
                    assert body["checks"]["redis_persistence"] == {
                        "ok": True,
                        "aof": False,
                        "rdb": False,
                        "durable": False,
                    }

                    await private.kill()
                    status, body = await readiness(client)
                    assert status == 503 and not body["ready"]
                    assert not body["checks"]["active_tier"]["ok"]
                    assert body["checks"]["active_tier"]["error"] == "StorageUnavailableError"
                    assert not body["checks"]["redis_persistence"]["ok"]
                    assert body["checks"]["archive"]["ok"] and body["checks"]["schema"]["ok"]
                    assert (await client.get("/healthz")).status_code == 200

                    caplog.set_level(logging.INFO, logger="fiml.calls")
                    assert "redis" in await fails(agent, "get-session-info", session_id=sid)
                    [record] = storage_records(caplog)
                    assert record.levelno == logging.ERROR
                    fields = (getattr(record, "tool", None), getattr(record, "backend", None))
                    assert fields == ("get-session-info", "redis")

                    await private.start()
                    await ready_again(client)


async def test_a_postgres_outage_reads_not_ready_then_ready(tmp_path: Path) -> None:
    pg = await require_postgres()
    await reset_postgres(pg)
    async with TcpProxy.in_front_of(pg) as proxy:
        settings = quick(proxy.url_through(pg), None)
        async with SessionStore(settings) as store:
            scheduler = JobScheduler.for_store(store, run_at_start=False)
            ops = OpsEndpoints(store, scheduler=scheduler, jobs_in_process=True, timeout=3)
            async with scheduler, probe(ops) as client:
                status, body = await readiness(client)
                assert status == 200, body
                assert set(body["checks"]) == {"archive", "schema", "scheduler"}
                assert body["checks"]["scheduler"]["running"]

                await proxy.cut()
                status, body = await readiness(client)
                assert status == 503
                assert not body["checks"]["archive"]["ok"]
                assert not body["checks"]["schema"]["ok"]
                assert body["checks"]["scheduler"]["ok"]
                metrics = (await client.get("/metrics")).text
                assert "fiml_sessions_active_total" not in metrics  # the store cannot say

                await proxy.restore()
                await ready_again(client)
                assert "fiml_sessions_active_total" in (await client.get("/metrics")).text


async def test_a_stopped_scheduler_reads_not_ready(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}", redis_url=None)
    async with SessionStore(settings) as store:
        scheduler = JobScheduler.for_store(store, run_at_start=False)
        async with probe(OpsEndpoints(store, scheduler=scheduler, jobs_in_process=True)) as client:
            status, body = await readiness(client)
            assert status == 503
            assert body["checks"]["scheduler"] == {
                "ok": False,
                "in_process": True,
                "running": False,
                "failures": {name: 0 for name in scheduler.failures},
            }
            async with scheduler:
                assert (await readiness(client))[0] == 200
