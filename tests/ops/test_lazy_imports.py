"""The CLI commands that count nothing never load prometheus_client (see
tests/cli/test_startup.py for the guard of the other heavy libraries)."""

from __future__ import annotations

import pytest

from tests.cli.test_startup import loaded_after, run_cli


@pytest.mark.parametrize(
    "args", [["--help"], ["status", "--help"], ["sessions", "list", "--json"], ["status"]]
)
def test_commands_that_serve_no_metrics_do_not_load_the_client(args: list[str]) -> None:
    assert "prometheus_client" not in loaded_after(run_cli(*args))


def test_status_help_loads_no_storage() -> None:
    assert not loaded_after(run_cli("status", "--help")) & {"sqlalchemy", "redis", "mcp"}
