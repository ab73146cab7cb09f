"""The metrics port of processes that serve no HTTP of their own: a stdio MCP server and a
Celery worker (whose prefork pool processes run the tasks, counted through the client
library's multiprocess mode)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters
from prometheus_client.parser import text_string_to_metric_families

from fiml.core.config import Settings
from fiml.core.metrics import MULTIPROC_ENV
from fiml.sessions.jobs import CLEANUP_JOB
from fiml.sessions.tasks import TASK_NAMES, create_celery_app
from tests.conftest import require_service, sqlite_url
from tests.jobs.conftest import JOBS_REDIS_URL
from tests.mcp.conftest import new_session
from tests.mcp.live_servers import server_env
from tests.reliability.services import free_port

START_SECONDS = 60


def values(text: str) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(url: str) -> httpx.Response:
    """GET ``url`` once it answers (the process is starting)."""
    deadline = time.monotonic() + START_SECONDS
    async with httpx.AsyncClient() as http:
        while True:
            try:
                return await http.get(url)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def test_a_stdio_server_serves_the_endpoints_on_its_metrics_port(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path, FIML_USER="al", FIML_METRICS_PORT=str(port))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "fiml.mcp"], env=env, cwd=str(tmp_path)
    )
    async with Client(params) as agent:
        await new_session(agent, session_type="macro")
        base = f"http://127.0.0.1:{port}"
        scraped = values((await scrape(f"{base}/metrics")).text)
        assert scraped["fiml_sessions_active_total[('session_type', 'macro')]"] == 1
        calls = "fiml_tool_calls_total[('outcome', 'ok'), ('tool', 'create-analysis-session')]"
        assert scraped[calls] == 1
        ready = await scrape(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["scheduler"]["running"]


async def test_a_celery_workers_pool_processes_are_counted_on_its_port(tmp_path: Path) -> None:
    require_service("Redis", JOBS_REDIS_URL, 6379)
    shared = tmp_path / "prometheus"
    shared.mkdir()
    port = free_port()
    database = sqlite_url(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env.update(
        FIML_DATABASE_URL=database,
        FIML_CELERY_BROKER_URL=JOBS_REDIS_URL,
        FIML_METRICS_PORT=str(port),
        **{MULTIPROC_ENV: str(shared)},
    )
    name = f"fiml-ops-{uuid.uuid4().hex[:8]}@localhost"
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fiml.sessions.tasks", "worker",
         "--pool=prefork", "--concurrency=1", "--loglevel=INFO", "-n", name,
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = create_celery_app(Settings(database_url=database, celery_broker_url=JOBS_REDIS_URL))
    try:
        deadline = time.monotonic() + START_SECONDS
        while not client.control.ping(destination=[name], timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not start:\n{(tmp_path / 'worker.log').read_text()}")
        result = client.send_task(TASK_NAMES[CLEANUP_JOB])
        stats = await asyncio.to_thread(result.get, timeout=30)
        assert stats["job"] == CLEANUP_JOB
        scraped = values((await scrape(f"http://127.0.0.1:{port}/metrics")).text)
        runs = f"fiml_job_runs_total[('job', '{CLEANUP_JOB}'), ('outcome', 'ok')]"
        assert scraped[runs] == 1
        assert scraped["fiml_cleanup_runs_total[('outcome', 'ok')]"] == 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
