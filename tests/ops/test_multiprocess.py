"""Several processes, one total: prometheus-client's multiprocess mode.

Two processes create sessions in one SQLite store with ``PROMETHEUS_MULTIPROC_DIR`` set to
one directory; a third renders the exposition as its ``/metrics`` would, and reports the
sum of both. Without the directory each process reports its own series alone (Prometheus
then tells the processes apart by their scrape target).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import fiml
from fiml.core.metrics import MULTIPROC_ENV
from tests.conftest import sqlite_url

SOURCE = Path(fiml.__file__).resolve().parent.parent
PER_PROCESS = 3

WORK = f"""
import asyncio, sys
from fiml.core.config import Settings
from fiml.core.metrics import enable_metrics, exposition
from fiml.sessions.store import SessionStore

async def main(url):
    enable_metrics()
    async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
        for _ in range({PER_PROCESS}):
            await store.create_session(["AAPL"], "equity", user_id="al")
    sys.stdout.buffer.write(exposition(None)[0])

asyncio.run(main(sys.argv[1]))
"""

RENDER = """
import sys
from fiml.core.metrics import enable_metrics, exposition
enable_metrics()
sys.stdout.buffer.write(exposition({"equity": 0})[0])
"""


def run(code: str, *args: str, multiproc: Path | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    env["PYTHONPATH"] = str(SOURCE)
    if multiproc is not None:
        env[MULTIPROC_ENV] = str(multiproc)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(done.stdout)
        for s in family.samples
    }


CREATED = "fiml_sessions_created_total[('session_type', 'equity')]"
OPERATIONS = (
    "fiml_store_operations_total[('backend', 'sqlite'), ('operation', 'create_session'), "
    "('outcome', 'ok')]"
)


def test_any_process_serves_the_totals_of_all(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    url = sqlite_url(tmp_path)
    run(WORK, url, multiproc=shared)
    second = run(WORK, url, multiproc=shared)
    assert second[CREATED] == 2 * PER_PROCESS
    totals = run(RENDER, multiproc=shared)
    assert totals[CREATED] == 2 * PER_PROCESS
    assert totals[OPERATIONS] == 2 * PER_PROCESS
    assert totals["fiml_sessions_active_total[('session_type', 'equity')]"] == 0


def test_without_the_directory_each_process_counts_its_own(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    run(WORK, url, multiproc=None)
    assert run(WORK, url, multiproc=None)[CREATED] == PER_PROCESS
