"""Shared fixtures: real services, cleaned between tests.

Tests that need PostgreSQL or Redis skip with a reason when the service is unreachable,
except under ``CI=true``, where an unreachable service fails them.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as redis

from fiml.core.config import Settings
from fiml.sessions.backends.sql import SqlBackend
from fiml.sessions.store import SessionStore
from tests.clock import MovableClock
from tests.database_reset import reset_postgres as reset_postgres  # the tests import it here
from tests.redis_cluster import cluster_tools_missing, cluster_url

POSTGRES_URL = os.environ.get(
    "FIML_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/fiml_test"
)
REDIS_URL = os.environ.get("FIML_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

CLUSTER_KIND = "redis-cluster+postgres"
STORE_KINDS = ["sqlite", "postgres", "redis+postgres", CLUSTER_KIND]
"""Every deployment the contract suite runs on (shared design, section 3). The Redis
Cluster one runs only in modules that set ``ON_CLUSTER = True`` (the contract suite and
the owned reads): elsewhere it would repeat, on the cluster, tests of code above the
storage tier that single Redis covers, and the suite's time with them."""


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip (locally) or fail (under CI) when a service is not reachable."""
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}; CI must start it (see .ci/run)")
    pytest.skip(message)


_created_databases: set[str] = set()


async def _ensure_database(url: str) -> None:
    """Create the test database on first use, so a bare ``pytest`` works locally too."""
    if url in _created_databases:
        return
    import asyncpg

    parts = urlsplit(url.replace("+asyncpg", ""))
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, database="postgres"
    )
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    _created_databases.add(url)


async def require_postgres() -> str:
    """The test PostgreSQL URL, after checking it is up and the database exists."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    await _ensure_database(POSTGRES_URL)
    return POSTGRES_URL


def require_redis() -> str:
    """The test Redis URL, after checking it is up."""
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


def require_redis_cluster() -> str:
    """The URL of the test Redis Cluster (one this run starts, see tests/redis_cluster.py)."""
    if os.environ.get("FIML_TEST_REDIS_CLUSTER_URL") is None:
        missing = cluster_tools_missing()
        if missing is not None:
            if IN_CI:
                pytest.fail(f"no Redis Cluster can be started: {missing}")
            pytest.skip(f"no Redis Cluster can be started: {missing}")
    url = cluster_url()
    require_service("Redis Cluster", url, 6379)
    return url


async def reset_redis_cluster(url: str) -> None:
    """Empty every master of the test Redis Cluster."""
    from redis.asyncio import RedisCluster

    client = RedisCluster.from_url(url)
    try:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        await client.aclose()


async def reset_redis(url: str) -> None:
    """Empty the test Redis database."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def sql_archive(store: SessionStore) -> SqlBackend:
    """The store's archive tier as every deployment has it, the SQL backend, for tests that
    look at (or cut) its database."""
    archive = store.archive
    assert isinstance(archive, SqlBackend)
    return archive


def sqlite_url(directory: Path) -> str:
    """A SQLite database file inside ``directory``."""
    return f"sqlite+aiosqlite:///{directory / 'sessions.db'}"


_sqlite_template: list[Path] = []


async def _migrate_new_sqlite(directory: Path) -> None:
    from fiml.sessions.db import create_engine
    from fiml.sessions.schema import upgrade_schema

    engine = create_engine(sqlite_url(directory))
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()  # the last connection's close folds the WAL into the file


def migrated_sqlite_url(directory: Path) -> str:
    """:func:`sqlite_url` of ``directory``, whose file is made a copy of one migrated to the
    newest schema once per test run: Alembic takes tens of milliseconds to migrate a new
    file, the copy one. For tests whose subject is not the first start on a new file."""
    if not _sqlite_template:
        template = Path(tempfile.mkdtemp(prefix="fiml-test-sqlite-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        # In a thread of its own, so that sync and async fixtures alike can call this.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, _migrate_new_sqlite(template)).result()
        _sqlite_template.append(template / "sessions.db")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template[0], directory / "sessions.db")
    return sqlite_url(directory)


async def settings_for(kind: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one deployment, with its services emptied (a new SQLite file, already
    at the newest schema, in ``tmp_path``)."""
    if kind == "sqlite":
        return Settings(database_url=migrated_sqlite_url(tmp_path), redis_url=None, **overrides)
    pg = await require_postgres()
    await reset_postgres(pg)
    if kind == "postgres":
        return Settings(database_url=pg, redis_url=None, **overrides)
    if kind == "redis+postgres":
        rd = require_redis()
        await reset_redis(rd)
        return Settings(database_url=pg, redis_url=rd, **overrides)
    if kind == CLUSTER_KIND:
        cluster = require_redis_cluster()
        await reset_redis_cluster(cluster)
        return Settings(database_url=pg, redis_url=cluster, redis_cluster=True, **overrides)
    raise ValueError(kind)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the Redis Cluster deployment where the module does not ask for it."""
    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_cluster = callspec is not None and CLUSTER_KIND in callspec.params.values()
        if on_cluster and not getattr(getattr(item, "module", None), "ON_CLUSTER", False):
            left_out.append(item)
        else:
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The deployment under test."""
    return str(request.param)


@pytest.fixture
async def settings(store_kind: str, tmp_path: Path) -> Settings:
    """Settings for the deployment under test, its services emptied."""
    return await settings_for(store_kind, tmp_path)


@pytest.fixture
def clock() -> MovableClock:
    """The clock of the store under test: the system's until the test moves it."""
    return MovableClock()


@pytest.fixture
async def store(settings: Settings, clock: MovableClock) -> AsyncIterator[SessionStore]:
    """An initialized store on the deployment under test, on the ``clock`` fixture."""
    session_store = SessionStore(settings, clock=clock)
    await session_store.initialize()
    try:
        yield session_store
    finally:
        await session_store.shutdown()


@pytest.fixture
async def raw() -> AsyncIterator[redis.Redis]:
    """A plain client on the test Redis database, to look at or damage its keys."""
    client = redis.Redis.from_url(require_redis(), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep tests away from the user's real data directory and .env file."""
    monkeypatch.setenv("FIML_DATABASE_URL", sqlite_url(tmp_path / "default"))
    # A test that unsets FIML_DATABASE_URL reaches the per-user default: keep it in tmp_path.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.delenv("FIML_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    yield
