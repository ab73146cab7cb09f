"""Commands load only what they use: the guard of quick starts (benchmarks/bench_startup.py
times them). Each check runs in a fresh interpreter, since this one has imported everything.

The libraries here are what a start costs most: SQLAlchemy and Alembic (the store), redis,
and the MCP SDK (the server).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fiml

SOURCE = Path(fiml.__file__).resolve().parent.parent
HEAVY = ("sqlalchemy", "alembic", "aiosqlite", "asyncpg", "redis", "mcp", "pydantic_settings")
STORE = ("sqlalchemy", "aiosqlite")


def loaded_after(code: str) -> set[str]:
    """The top-level packages and the ``fiml`` modules loaded once ``code`` has run in a new
    interpreter (on the test's database: the root conftest's FIML_DATABASE_URL)."""
    report = (
        "import json, sys; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} | "
        "{m for m in sys.modules if m.startswith('fiml.')})))"
    )
    script = f"{code}\n{report}"
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def run_cli(*args: str) -> str:
    """``fiml ARGS`` in process, leaving the interpreter up for the report that follows."""
    return (
        "from fiml.cli.app import app\n"
        "try:\n"
        f"    app({list(args)!r})\n"
        "except SystemExit as exit_:\n"
        "    assert not exit_.code, exit_.code\n"
    )


def test_importing_the_cli_loads_no_storage_nor_server() -> None:
    loaded = loaded_after("import fiml.cli.app")
    assert not loaded & set(HEAVY)
    assert not {m for m in loaded if m.startswith(("fiml.sessions", "fiml.mcp", "fiml.market"))}


@pytest.mark.parametrize(
    "args", [["--help"], ["sessions", "--help"], ["serve", "--help"], ["dashboard", "--help"]]
)
def test_help_loads_no_storage_nor_server(args: list[str]) -> None:
    assert not loaded_after(run_cli(*args)) & set(HEAVY)


@pytest.mark.parametrize("user", [[], ["--user", "alice"]])
def test_listing_sessions_opens_the_store_without_the_mcp_sdk(user: list[str]) -> None:
    """Without ``--user`` the command asks fiml.mcp.auth who the local user is."""
    loaded = loaded_after(run_cli("sessions", "list", *user, "--json"))
    assert set(STORE) <= loaded
    assert "mcp" not in loaded
    assert "redis" not in loaded  # the default deployment is SQLite alone


def test_alembic_is_loaded_to_migrate_and_not_to_start_on_a_schema_at_head() -> None:
    """The first command on a new SQLite file creates its schema; later ones only read
    its revision, which fiml.sessions.schema knows without Alembic."""
    listing = run_cli("sessions", "list", "--json")
    assert "alembic" in loaded_after(listing)
    assert "alembic" not in loaded_after(listing)


def test_the_packages_re_export_their_names_when_first_looked_up() -> None:
    code = (
        "import sys\n"
        "from fiml.sessions import SessionStore, Session\n"
        "import fiml.sessions\n"
        "assert 'SessionStore' in dir(fiml.sessions)\n"
        "from fiml.sessions.backends import SqlBackend, build_backends\n"
        "from fiml.mcp import build_server, local_identity\n"
        "from fiml.mcp.auth import HashedTokenVerifier\n"
    )
    loaded = loaded_after(code)
    assert {"fiml.sessions.store", "fiml.sessions.backends.sql", "fiml.mcp.server"} <= loaded


def test_a_name_no_package_exports_is_an_attribute_error() -> None:
    import fiml.mcp
    import fiml.sessions

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = fiml.sessions.Nope  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = fiml.mcp.Nope  # type: ignore[attr-defined]


def test_every_name_fiml_sessions_exports_resolves() -> None:
    import fiml.sessions

    for name in fiml.sessions.__all__:
        assert getattr(fiml.sessions, name) is not None, name
