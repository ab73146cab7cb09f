"""A Redis that would lose the active sessions on a restart is said so, once, at start.

Against the test Redis (run without persistence, as CI runs it): ``fiml serve``, ``fiml db
verify`` and a real Celery worker each print or log one warning naming ``appendonly yes``.
Against a private ``redis-server --appendonly yes``: no warning. A Redis whose CONFIG
command is disabled (as on managed Redis) is judged by ``INFO persistence``; one that
cannot be asked is said to be unchecked.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import Result

from fiml.core.config import Settings
from fiml.core.redis_client import open_redis
from fiml.sessions.backends.redis_persistence import persistence_warning
from tests.cli.conftest import invoke
from tests.conftest import require_redis, sqlite_url
from tests.jobs.conftest import JOBS_REDIS_URL
from tests.reliability.services import PrivateRedis, free_port, wait_until

WORKER_START_SECONDS = 60


@pytest.fixture
async def aof_redis(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a private Redis with append-only persistence."""
    async with PrivateRedis(tmp_path, appendonly=True) as server:
        yield server.url


def warnings_in(text: str) -> list[str]:
    """The persistence warning lines in some output."""
    return [line for line in text.splitlines() if "appendonly yes" in line]


def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=sqlite_url(tmp_path), redis_url=redis_url)


async def test_a_redis_without_persistence_gets_one_warning_naming_the_setting(
    tmp_path: Path,
) -> None:
    url = require_redis()
    warning = await persistence_warning(settings(url, tmp_path))
    assert warning is not None
    where = urlsplit(url)
    assert warning.startswith(f"warning: Redis at {where.hostname}:{where.port or 6379}/")
    assert 'appendonly no, save ""' in warning
    assert "every active session is lost when it restarts" in warning
    assert "\n" not in warning and "appendonly yes" in warning


async def test_an_append_only_redis_gets_no_warning(aof_redis: str, tmp_path: Path) -> None:
    assert await persistence_warning(settings(aof_redis, tmp_path)) is None


async def test_without_config_the_check_reads_info_persistence(tmp_path: Path) -> None:
    async with PrivateRedis(tmp_path, extra_args=["--rename-command", "CONFIG", ""]) as bare:
        warning = await persistence_warning(settings(bare.url, tmp_path))
    assert warning is not None and "INFO persistence: aof_enabled:0" in warning
    async with PrivateRedis(
        tmp_path, appendonly=True, extra_args=["--rename-command", "CONFIG", ""]
    ) as logged:
        assert await persistence_warning(settings(logged.url, tmp_path)) is None


async def test_a_redis_that_cannot_be_asked_is_said_to_be_unchecked(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    warning = await persistence_warning(
        settings(url, tmp_path).model_copy(update={"redis_timeout_seconds": 1})
    )
    assert warning is not None
    assert warning.startswith("warning: could not check whether Redis at 127.0.0.1:")
    assert "appendonly yes" in warning


async def test_no_redis_no_check(tmp_path: Path) -> None:
    no_redis = Settings(database_url=sqlite_url(tmp_path), redis_url=None)
    assert await persistence_warning(no_redis) is None


async def test_the_check_asks_the_client_it_is_lent_and_leaves_it_open(tmp_path: Path) -> None:
    on_redis = settings(require_redis(), tmp_path)
    async with open_redis(on_redis.redis_url, on_redis) as client:
        assert client is not None
        warning = await persistence_warning(on_redis, client)
        assert warning is not None and "appendonly yes" in warning
        assert await client.ping()  # still the process's client


def cli(monkeypatch: pytest.MonkeyPatch, redis_url: str, *args: str) -> Result:
    monkeypatch.setenv("FIML_REDIS_URL", redis_url)
    return invoke(*args)


def test_fiml_db_verify_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    invoke("db", "create")
    result = cli(monkeypatch, require_redis(), "db", "verify", "--json")
    assert result.exit_code == 0, result.output
    assert len(warnings_in(result.stderr)) == 1
    assert warnings_in(result.stdout) == []  # --json output stays clean


async def test_fiml_db_verify_is_quiet_on_an_append_only_redis(
    monkeypatch: pytest.MonkeyPatch, aof_redis: str
) -> None:
    # The CLI runs its own event loop: off this test's loop, in a thread.
    await asyncio.to_thread(invoke, "db", "create")
    result = await asyncio.to_thread(cli, monkeypatch, aof_redis, "db", "verify")
    assert result.exit_code == 0, result.output
    assert warnings_in(result.output) == []


def test_fiml_serve_warns_once_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    invoke("db", "create")
    # Over stdio with no client (stdin at its end): the start runs whole, then serve ends.
    result = cli(monkeypatch, require_redis(), "serve", "--offline", "--no-jobs")
    assert result.exit_code == 0, result.output
    assert len(warnings_in(result.stderr)) == 1


@pytest.fixture
def worker_log(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Where a worker logs, and its environment (the job tests' broker, the test SQLite)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env.update(FIML_DATABASE_URL=sqlite_url(tmp_path), FIML_CELERY_BROKER_URL=JOBS_REDIS_URL)
    yield tmp_path / "worker.log", env


async def started_worker_log(log: Path, env: dict[str, str], redis_url: str) -> str:
    """Start a real Celery worker on ``redis_url``, stop it once ready; what it logged."""
    require_redis()
    name = f"fiml-persist-{uuid.uuid4().hex[:8]}@localhost"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fiml.sessions.tasks", "worker",
             "--pool=solo", "--loglevel=INFO", "-n", name,
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env={**env, "FIML_REDIS_URL": redis_url}, cwd=log.parent,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            async def ready() -> bool:
                return process.poll() is not None or " ready." in log.read_text()

            await wait_until(ready, seconds=WORKER_START_SECONDS, interval=0.1)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return log.read_text()


@pytest.mark.timeout(180)
async def test_a_celery_worker_logs_one_warning_at_start(
    worker_log: tuple[Path, dict[str, str]],
) -> None:
    text = await started_worker_log(*worker_log, require_redis())
    assert " ready." in text, text
    assert len(warnings_in(text)) == 1, text


@pytest.mark.timeout(180)
async def test_a_celery_worker_on_an_append_only_redis_logs_none(
    worker_log: tuple[Path, dict[str, str]], aof_redis: str
) -> None:
    text = await started_worker_log(*worker_log, aof_redis)
    assert " ready." in text, text
    assert warnings_in(text) == [], text
