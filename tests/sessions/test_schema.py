"""Alembic migrations produce exactly the schema the code defines, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from fiml.sessions.db import create_engine, metadata
from fiml.sessions.schema import drop_schema, head_revision, upgrade_schema, verify_schema
from tests.conftest import require_postgres, sqlite_url

ROOT = Path(__file__).resolve().parents[2]


async def database_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return sqlite_url(tmp_path)
    url = await require_postgres()
    engine = create_engine(url)
    await drop_schema(engine)
    await engine.dispose()
    return url


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migrations_match_the_models(kind: str, tmp_path: Path) -> None:
    engine = create_engine(await database_url(kind, tmp_path))
    try:
        await upgrade_schema(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
        report = await verify_schema(engine)
        assert report.ok
        assert report.current_revision == head_revision()

        await drop_schema(engine)
        report = await verify_schema(engine)
        assert not report.ok
        assert report.current_revision is None
        assert "sessions" in report.missing_tables
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    from fiml.core.config import Settings
    from fiml.sessions import SessionStore

    settings = Settings(database_url=sqlite_url(tmp_path))
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
    async with SessionStore(settings) as store:
        assert await store.get_session(session.id) is not None


def _script(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIML_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "setup_session_db.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_setup_script_create_verify_drop(kind: str, tmp_path: Path) -> None:
    url = await database_url(kind, tmp_path)
    missing = _script("verify", url=url)
    assert missing.returncode == 1
    assert "missing table: sessions" in missing.stdout

    created = _script("create", url=url)
    assert created.returncode == 0, created.stderr
    verified = _script("verify", url=url)
    assert verified.returncode == 0, verified.stdout
    assert "schema OK" in verified.stdout

    refused = _script("drop", url=url)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert _script("verify", url=url).returncode == 0

    dropped = _script("drop", "--yes", url=url)
    assert dropped.returncode == 0
    assert _script("verify", url=url).returncode == 1
