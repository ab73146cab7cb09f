"""Alembic migrations produce exactly the schema the code defines, on SQLite and PostgreSQL;
a process migrates SQLite by itself and refuses a PostgreSQL schema that is not at head."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from fiml.core.config import Settings
from fiml.core.errors import (
    ConfigurationError,
    SchemaNewerError,
    SchemaOutdatedError,
    SchemaRevisionError,
)
from fiml.sessions import SessionStore
from fiml.sessions.backends.sql_partitions import compared_with_models
from fiml.sessions.db import create_engine, metadata
from fiml.sessions.schema import (
    FULL_TEXT_OBJECTS,
    HEAD_REVISION,
    REVISIONS,
    alembic_config,
    current_revision,
    drop_schema,
    head_revision,
    upgrade_schema,
    verify_schema,
)
from tests.conftest import require_postgres, require_redis, reset_redis, sql_archive, sqlite_url
from tests.sessions.pg_roles import admin_dsn, plain_role

SETUP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup_session_db.py"


async def database_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return sqlite_url(tmp_path)
    url = await require_postgres()
    engine = create_engine(url)
    await drop_schema(engine)
    await engine.dispose()
    return url


def test_the_listed_revisions_are_the_shipped_migrations_in_order() -> None:
    """The schema check knows the revisions without Alembic; this holds the list to the
    scripts: a migration added without its revision listed fails here."""
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_current_head() == HEAD_REVISION == REVISIONS[-1]
    walked = [script.revision for script in scripts.walk_revisions()]  # newest first
    assert tuple(reversed(walked)) == REVISIONS


def _differences(connection: Connection) -> list[object]:
    def ours(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
        if name in FULL_TEXT_OBJECTS:  # migration 0005's full-text index, not ORM
            return False
        return compared_with_models(obj, name, type_, reflected, other)

    options = {"compare_type": True, "include_object": ours}
    context = MigrationContext.configure(connection, opts=options)
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


async def test_the_models_alone_create_postgres_partial_indexes_and_jsonb(tmp_path: Path) -> None:
    """The models declare the partial indexes for SQLite only and JSON columns without the
    PostgreSQL dialect (so that SQLite processes never import it); DDL from the models
    through a PostgreSQL engine still gets the indexes' conditions and JSONB."""
    engine = create_engine(await database_url("postgres", tmp_path))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            rows = await conn.execute(text(_PARTIAL_INDEXES), {"table": "sessions"})
            indexes = {name: definition for name, definition in rows.all()}
            types = set(
                (await conn.execute(text(_COLUMN_TYPES), {"table": "sessions"})).scalars().all()
            )
        assert indexes["ix_sessions_active_expiry"].endswith("WHERE (archived_at IS NULL)")
        assert indexes["ix_sessions_archived_at"].endswith("WHERE (archived_at IS NOT NULL)")
        assert "jsonb" in types
        assert "json" not in types
    finally:
        await drop_schema(engine)
        await engine.dispose()


_PARTIAL_INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :table"
_COLUMN_TYPES = "SELECT data_type FROM information_schema.columns WHERE table_name = :table"


def test_the_sql_store_imports_no_postgresql_dialect() -> None:
    """SQLite deployments (the default) do not pay for importing the PostgreSQL dialect."""
    code = (
        "import sys, fiml.sessions.store, fiml.sessions.backends.sql, fiml.sessions.quarantine\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.postgresql')))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


async def test_upgrade_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    from fiml.core.config import Settings
    from fiml.sessions import SessionStore

    settings = Settings(database_url=sqlite_url(tmp_path))
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
    async with SessionStore(settings) as store:
        assert await store.get_session(session.id) is not None


def _script(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run the script as a process, stdin not a terminal, as a deployment job runs it."""
    env = {**os.environ, "FIML_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, str(SETUP_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def _script_main() -> Callable[[list[str]], int]:
    """The script's ``main(argv)``, to run its steps in this process: a Python start each
    costs seconds, and the process's own part (exit code, stdin) is checked by _script."""
    spec = importlib.util.spec_from_file_location("setup_session_db", SETUP_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Callable[[list[str]], int] = module.main
    return main


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_setup_script_create_verify_drop(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = asyncio.run(database_url(kind, tmp_path))
    missing = _script("verify", url=url)
    assert missing.returncode == 1
    assert "missing table: sessions" in missing.stdout

    main = _script_main()
    assert main(["create", "--database-url", url]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["verify", "--database-url", url]) == 0
    assert "schema OK" in capsys.readouterr().out

    refused = _script("drop", url=url)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert main(["verify", "--database-url", url]) == 0

    assert main(["drop", "--yes", "--database-url", url]) == 0
    assert main(["verify", "--database-url", url]) == 1


async def _database_at(url: str, revision: str | None) -> str:
    """``url`` migrated from nothing to ``revision`` (None: left without a schema)."""
    engine = create_engine(url)
    try:
        await drop_schema(engine)
        if revision is not None:
            await upgrade_schema(engine, revision)
    finally:
        await engine.dispose()
    return url


async def _schema_state(url: str) -> tuple[str | None, list[str]]:
    """The database's revision and its missing tables."""
    engine = create_engine(url)
    try:
        report = await verify_schema(engine)
    finally:
        await engine.dispose()
    return report.current_revision, sorted(report.missing_tables)


async def _stamp(url: str, revision: str) -> None:
    """Pretend another FIML migrated the database to ``revision``."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        await engine.dispose()


def _assert_one_line(error: SchemaRevisionError, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


ALL_TABLES = sorted(table.name for table in metadata.sorted_tables)


@pytest.mark.parametrize("kind", ["postgres", "redis+postgres"])
async def test_a_postgres_schema_behind_the_package_is_refused_and_left_as_it_was(
    kind: str,
) -> None:
    url = await _database_at(await require_postgres(), "0002")
    redis_url = None
    if kind == "redis+postgres":
        redis_url = require_redis()
        await reset_redis(redis_url)
    store = SessionStore(Settings(database_url=url, redis_url=redis_url))

    with pytest.raises(SchemaOutdatedError) as refused:
        await store.initialize()

    assert isinstance(refused.value, ConfigurationError)
    assert (refused.value.current, refused.value.head) == ("0002", head_revision())
    assert "@127.0.0.1" in refused.value.database
    _assert_one_line(refused.value, "revision 0002", head_revision(), "`fiml db upgrade`")
    assert await _schema_state(url) == (
        "0002",
        [
            "session_events",
            "session_quarantine",
            "session_search_terms",
            "session_shares",
            "session_templates",
        ],
    )


async def test_a_postgres_database_without_the_schema_is_refused_and_left_empty() -> None:
    url = await _database_at(await require_postgres(), None)

    with pytest.raises(SchemaOutdatedError) as refused:
        await SessionStore(Settings(database_url=url, redis_url=None)).initialize()

    assert (refused.value.current, refused.value.head) == (None, head_revision())
    _assert_one_line(refused.value, "holds no FIML schema", "`fiml db upgrade`")
    assert await _schema_state(url) == (None, ALL_TABLES)


@pytest.mark.parametrize("auto_migrate", [False, True])
async def test_a_schema_migrated_by_a_newer_fiml_is_refused_naming_both_revisions(
    auto_migrate: bool,
) -> None:
    url = await _database_at(await require_postgres(), "head")
    await _stamp(url, "9999")
    settings = Settings(database_url=url, redis_url=None, database_auto_migrate=auto_migrate)

    with pytest.raises(SchemaNewerError) as refused:
        await SessionStore(settings).initialize()
    engine = create_engine(url)
    try:
        with pytest.raises(SchemaNewerError):  # what `fiml db upgrade` runs refuses it too
            await upgrade_schema(engine)
    finally:
        await engine.dispose()

    assert (refused.value.current, refused.value.head) == ("9999", head_revision())
    _assert_one_line(refused.value, "revision 9999", f"newest revision {head_revision()}")
    assert await _schema_state(url) == ("9999", [])


async def test_auto_migrate_opts_postgres_in_to_migrating_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = await _database_at(await require_postgres(), "0002")
    monkeypatch.setenv("FIML_DATABASE_AUTO_MIGRATE", "true")
    settings = Settings(database_url=url, redis_url=None)
    assert settings.database_auto_migrate is True

    async with SessionStore(settings) as store:
        await store.create_session(["AAPL"], "equity", user_id="u1")

    assert await _schema_state(url) == (head_revision(), [])


async def test_a_check_at_head_is_one_query_and_the_store_starts() -> None:
    url = await _database_at(await require_postgres(), "head")
    store = SessionStore(Settings(database_url=url, redis_url=None))
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    try:
        # The engine exists once the store built its backends; count what initialize runs.
        await store.initialize()
        await store.shutdown()
        event.listen(sql_archive(store).engine.sync_engine, "before_cursor_execute", record)
        await store.initialize()
        await store.create_session(["AAPL"], "equity", user_id="u1")
    finally:
        await store.shutdown()

    assert statements[0] == "SELECT version_num FROM alembic_version"
    assert not any("alembic_version" in s or "pg_advisory" in s for s in statements[1:])


async def test_a_version_table_that_cannot_be_read_is_not_taken_for_no_schema() -> None:
    url = await _database_at(await require_postgres(), "head")
    role_url = await plain_role(url, "noversion")
    admin = await asyncpg.connect(admin_dsn(url))
    try:
        role = role_url.split("://", 1)[1].split("@", 1)[0]
        await admin.execute(f'REVOKE ALL ON alembic_version FROM "{role}"')
    finally:
        await admin.close()
    engine = create_engine(role_url)
    try:
        with pytest.raises(DBAPIError, match="permission denied"):
            await current_revision(engine)
    finally:
        await engine.dispose()

    with pytest.raises(DBAPIError, match="permission denied"):
        await SessionStore(Settings(database_url=role_url, redis_url=None)).initialize()


async def test_sqlite_migrates_itself_from_nothing_and_from_an_older_revision(
    tmp_path: Path,
) -> None:
    fresh = sqlite_url(tmp_path / "fresh")
    older = await _database_at(sqlite_url(tmp_path / "older"), "0001")
    assert await _schema_state(older) == (
        "0001",
        [
            "session_events",
            "session_metric_assets",
            "session_metric_query_types",
            "session_metric_tags",
            "session_metrics",
            "session_quarantine",
            "session_search_terms",
            "session_shares",
            "session_templates",
        ],
    )

    for url in (fresh, older):
        async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
            await store.create_session(["AAPL"], "equity", user_id="u1")
        assert await _schema_state(url) == (head_revision(), []), url
