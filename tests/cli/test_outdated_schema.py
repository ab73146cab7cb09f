"""``fiml serve`` and a Celery task on a PostgreSQL schema behind the package: they refuse to
start, in one line naming ``fiml db upgrade``, and leave the schema as it was."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fiml.cli.failures import EXIT_BAD_INPUT
from fiml.core.errors import ConfigurationError
from fiml.sessions.db import create_engine
from fiml.sessions.jobs import CLEANUP_JOB
from fiml.sessions.schema import current_revision, drop_schema, upgrade_schema
from fiml.sessions.tasks import TASK_NAMES
from tests.conftest import require_postgres
from tests.jobs import test_celery_worker
from tests.mcp.live_servers import server_env

worker = test_celery_worker.worker
"""The real worker subprocess, on the test broker and POSTGRES_URL."""

TIMEOUT = 90


async def _postgres_at(revision: str) -> str:
    url = await require_postgres()
    engine = create_engine(url)
    try:
        await drop_schema(engine)
        await upgrade_schema(engine, revision)
    finally:
        await engine.dispose()
    return url


async def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


async def test_serve_on_an_outdated_postgres_exits_2_with_one_line(tmp_path: Path) -> None:
    url = await _postgres_at("0002")

    served = subprocess.run(
        [sys.executable, "-m", "fiml.cli", "serve", "--offline"],
        env={**server_env(tmp_path), "FIML_DATABASE_URL": url},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert served.returncode == EXIT_BAD_INPUT, served.stderr
    errors = [line for line in served.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in served.stderr, served.stderr
    assert "revision 0002" in errors[0] and "`fiml db upgrade`" in errors[0]
    assert await _revision(url) == "0002"


async def test_a_celery_task_on_an_outdated_postgres_fails_with_the_one_line(
    worker: Any,
) -> None:
    url = await _postgres_at("0002")
    result = worker.send_task(TASK_NAMES[CLEANUP_JOB])

    # Celery ships the nearest class of the error's MRO that it can rebuild from the message
    # alone: ConfigurationError, the parent of SchemaOutdatedError.
    with pytest.raises(ConfigurationError) as failed:
        await asyncio.to_thread(result.get, timeout=test_celery_worker.RESULT_TIMEOUT)

    assert result.state == "FAILURE"
    message = str(failed.value)
    assert "\n" not in message
    assert "revision 0002" in message and "`fiml db upgrade`" in message
    assert await _revision(url) == "0002"
