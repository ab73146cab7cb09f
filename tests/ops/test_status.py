"""``fiml status``: the deployment's readiness for an operator, as a table or ``--json``.

Run as a shell runs it (typer's runner, each command its own event loop), on the root
conftest's SQLite file; a database nobody listens on reads as not ready (exit code 3).
"""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import assert_one_line_error, invoke
from tests.reliability.services import free_port

EXIT_NOT_READY = 3


def test_a_working_deployment_is_ready() -> None:
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ready"] is True
    assert set(report["checks"]) == {"archive", "schema"}
    assert report["checks"]["schema"]["revision"] == report["checks"]["schema"]["head"]


def test_the_table_names_every_check() -> None:
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert "archive" in result.stdout and "schema" in result.stdout
    assert result.stdout.rstrip().endswith("ready")


def test_an_unreachable_database_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    monkeypatch.setenv("FIML_DATABASE_URL", url)
    monkeypatch.setenv("FIML_DATABASE_TIMEOUT_SECONDS", "2")
    result = invoke("status", "--json")
    assert result.exit_code == EXIT_NOT_READY, result.output
    report = json.loads(result.stdout)
    assert report == {
        "ready": False,
        "checks": {"store": report["checks"]["store"]},
    }
    assert report["checks"]["store"]["ok"] is False
    assert report["checks"]["store"]["error"] == "StorageUnavailableError"


def test_a_server_that_does_not_answer_is_one_line_error() -> None:
    result = invoke("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert_one_line_error(result, EXIT_NOT_READY, "server", "readyz")
