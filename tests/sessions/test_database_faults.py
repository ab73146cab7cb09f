"""A database that is up but cannot take a write fails the call with a typed storage
error naming the backend and the reason, and changes nothing (real SQLite files, the real
PostgreSQL).

Refused (retrying cannot help): a full disk, a read-only database. Unavailable (it may
clear): a database file that cannot be opened, an I/O error. Each fault is provoked for
real: SQLite's ``max_page_count`` (a database that cannot grow), a file opened read-only
(``mode=ro``: we run as root, whom file modes do not stop), a directory where the file
should be, a file-size limit that fails the write system call (``RLIMIT_FSIZE``: the
kernel answers EFBIG, SQLite reports SQLITE_IOERR_WRITE); on PostgreSQL a role whose
transactions are read-only, and a tablespace on a 1 MB tmpfs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from sqlalchemy import event

from fiml.core.config import Settings
from fiml.core.errors import StorageRefusedError, StorageUnavailableError
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from tests.conftest import POSTGRES_URL, settings_for, sql_archive, sqlite_url
from tests.sessions.pg_roles import admin_dsn, plain_role

BIG_VALUE_CHARS = 60_000


def big_value() -> str:
    """A context value that does not compress (tmpfs and TOAST cannot shrink it)."""
    return secrets.token_urlsafe(BIG_VALUE_CHARS)[:BIG_VALUE_CHARS]


async def snapshot(store: SessionStore, session_id: UUID) -> dict[str, Any]:
    """Everything stored about a session, less its access time."""
    session = await store.get_session(session_id, history_limit=ALL_QUERIES)
    assert session is not None
    return {k: v for k, v in session.to_dict().items() if k != "last_accessed_at"}


async def new_session(settings: Settings) -> tuple[UUID, dict[str, Any]]:
    """A session with one query and one context key, and its snapshot."""
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        await store.append_query(session.id, QueryRecord(query_type="price"))
        await store.update_state(session.id, context={"kept": 1})
        return session.id, await snapshot(store, session.id)


def write_attempts(store: SessionStore, session_id: UUID) -> dict[str, Any]:
    """One of each kind of write, by name."""
    return {
        "track": lambda: store.append_query(session_id, QueryRecord(query_type="price")),
        "context": lambda: store.update_state(session_id, context={"big": big_value()}),
        "create": lambda: store.create_session(["MSFT"], "equity", user_id="u1"),
    }


# --- SQLite -------------------------------------------------------------------------------


async def test_a_full_sqlite_database_refuses_writes_and_keeps_its_data(tmp_path: Path) -> None:
    settings = await settings_for("sqlite", tmp_path)
    session_id, before = await new_session(settings)
    async with SessionStore(settings) as store:
        statements = sql_archive(store).sync_engine  # the database thread's engine

        @event.listens_for(statements, "connect")
        def _no_room_to_grow(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL past this
            cursor.close()

        statements.dispose()  # reconnect with the limit
        with pytest.raises(StorageRefusedError) as caught:
            await store.update_state(session_id, context={"big": big_value()})
        assert caught.value.backend == "sqlite"
        assert caught.value.reason.startswith("the disk is full")
        assert await snapshot(store, session_id) == before
        assert len(await store.list_user_sessions("u1")) == 1


async def test_a_read_only_sqlite_database_refuses_every_write(tmp_path: Path) -> None:
    settings = await settings_for("sqlite", tmp_path)
    session_id, before = await new_session(settings)
    path = tmp_path / "sessions.db"
    read_only = settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"}
    )
    async with SessionStore(read_only) as store:
        for name, write in write_attempts(store, session_id).items():
            with pytest.raises(StorageRefusedError) as caught:
                await write()
            assert caught.value.backend == "sqlite", name
            assert caught.value.reason.startswith("the database file is read-only"), name
        assert await snapshot(store, session_id) == before  # reads still work
    async with SessionStore(settings) as store:
        assert await snapshot(store, session_id) == before
        assert len(await store.list_user_sessions("u1")) == 1


async def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    where = tmp_path / "sessions.db"
    where.mkdir()  # a directory where the database file should be
    settings = Settings(database_url=sqlite_url(tmp_path), redis_url=None)
    with pytest.raises(StorageUnavailableError) as caught:
        async with SessionStore(settings):
            pass
    assert caught.value.backend == "sqlite"
    assert caught.value.reason.startswith("the database file cannot be opened")
    assert list(where.iterdir()) == []


IO_ERROR_SCRIPT = """
import asyncio, json, resource, secrets, signal, sys
from fiml.core.config import Settings
from fiml.core.errors import StorageError
from fiml.sessions import SessionStore

async def main(url, session_id, size):
    value = secrets.token_urlsafe(int(size))[: int(size)]
    async with SessionStore(Settings(database_url=url, redis_url=None)) as store:
        await store.get_session(session_id)  # open the file, its WAL and shared memory
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.RLIM_INFINITY))
        try:
            await store.update_state(session_id, context={"big": value})
        except StorageError as exc:
            resource.setrlimit(resource.RLIMIT_FSIZE, (-1, -1))
            print(json.dumps([type(exc).__name__, exc.backend, exc.reason]))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_an_io_error_under_sqlite_is_unavailable_and_changes_nothing(
    tmp_path: Path,
) -> None:
    settings = await settings_for("sqlite", tmp_path)
    session_id, before = await new_session(settings)
    script = [sys.executable, "-c", IO_ERROR_SCRIPT, settings.database_url, str(session_id)]
    result = subprocess.run(
        [*script, str(BIG_VALUE_CHARS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    kind, backend, reason = json.loads(result.stdout)
    assert (kind, backend) == ("StorageUnavailableError", "sqlite"), result.stderr
    assert reason.startswith("the disk failed a read or a write")
    async with SessionStore(settings) as store:
        assert await snapshot(store, session_id) == before


# --- PostgreSQL ---------------------------------------------------------------------------


async def test_a_read_only_postgres_refuses_every_write(tmp_path: Path) -> None:
    settings = await settings_for("postgres", tmp_path)
    session_id, before = await new_session(settings)
    url = await plain_role(
        settings.database_url, "read_only", "SET default_transaction_read_only = on"
    )
    async with SessionStore(settings.model_copy(update={"database_url": url})) as store:
        for name, write in write_attempts(store, session_id).items():
            with pytest.raises(StorageRefusedError) as caught:
                await write()
            assert caught.value.backend == "postgresql", name
            assert caught.value.reason.startswith("the database is read-only"), name
        assert await snapshot(store, session_id) == before
    async with SessionStore(settings) as store:
        assert await snapshot(store, session_id) == before
        assert len(await store.list_user_sessions("u1")) == 1


@pytest.fixture
async def tiny_tablespace() -> AsyncIterator[str]:
    """A PostgreSQL tablespace on a 1 MB tmpfs (skips where mounting is not allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="fiml-tablespace-"))  # PostgreSQL must reach it
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    name = f"fiml_full_{uuid.uuid4().hex[:12]}"
    admin: asyncpg.Connection | None = None
    try:
        shutil.chown(where, "postgres", "postgres")
        admin = await asyncpg.connect(admin_dsn(POSTGRES_URL))
        await admin.execute(f"CREATE TABLESPACE {name} LOCATION '{where}'")
        yield name
    finally:
        if admin is not None:
            await admin.execute(f"ALTER TABLE ALL IN TABLESPACE {name} SET TABLESPACE pg_default")
            await admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
            await admin.close()
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


async def test_a_postgres_with_a_full_disk_refuses_writes_and_keeps_its_data(
    tmp_path: Path, tiny_tablespace: str
) -> None:
    settings = await settings_for("postgres", tmp_path)
    session_id, before = await new_session(settings)
    admin = await asyncpg.connect(admin_dsn(settings.database_url))
    try:
        # The table (the partition, from revision 0004) that holds the session's row.
        holder = await admin.fetchval(
            "SELECT tableoid::regclass::text FROM sessions WHERE id = $1", session_id
        )
        await admin.execute(f"ALTER TABLE {holder} SET TABLESPACE {tiny_tablespace}")
    finally:
        await admin.close()
    async with SessionStore(settings) as store:
        with pytest.raises(StorageRefusedError) as caught:
            for n in range(100):  # the disk fills after about 17 such values
                await store.update_state(session_id, context={f"big{n}": big_value()})
        assert caught.value.backend == "postgresql"
        assert caught.value.reason.startswith("the disk is full")
        after = await snapshot(store, session_id)
        filled = {k for k in after["state"]["context"] if k.startswith("big")}
        assert filled == {f"big{i}" for i in range(n)}  # every write before the full one
        assert after["state"]["context"]["kept"] == 1
        assert after["state"]["history"] == before["state"]["history"]
        assert after["version"] == before["version"] + n
