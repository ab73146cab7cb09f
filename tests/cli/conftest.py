"""Helpers for the CLI tests: typer's runner on the SQLite file of the root conftest.

The root conftest points ``FIML_DATABASE_URL`` at a SQLite file in ``tmp_path`` and
chdirs there, so the CLI and :func:`with_store` see the same database. Commands are run
from synchronous tests, as a shell would run them: each one starts its own event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner, Result

from fiml.cli import app
from fiml.core.config import Settings
from fiml.sessions.models import QueryRecord
from fiml.sessions.store import SessionStore
from tests.conftest import migrated_sqlite_url

T = TypeVar("T")

TINY_TTL_HOURS = 1e-9
"""3.6 microseconds: a session created with it has expired by the next call."""

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def invoke(*args: str, input: str | None = None, columns: int = 160) -> Result:
    """Run ``fiml ARGS`` in process, ``columns`` wide; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": str(columns)})


def ok_json(*args: str) -> Any:
    """Run ``fiml ARGS --json``, which must succeed, and parse what it printed."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> str:
    """The command failed with ``exit_code`` and said why in one line on stderr, no traceback."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def with_store(work: Callable[[SessionStore], Awaitable[T]]) -> T:
    """Run ``work`` on a store for the test's database (the same one the CLI uses)."""

    async def run() -> T:
        async with SessionStore(Settings()) as store:
            return await work(store)

    return asyncio.run(run())


@dataclass(frozen=True)
class Seeded:
    """Sessions created before a test, oldest first.

    alice: ``active`` (equity, three queries, one a cache hit, a context key), ``closed``
    (crypto, one query) and ``expired`` (crypto, no query); bob: ``bob`` (equity, active).
    """

    active: str
    closed: str
    expired: str
    bob: str


async def _seed(store: SessionStore) -> Seeded:
    active = await store.create_session(["AAPL", "MSFT"], "equity", user_id="alice", tags=["q3"])
    for symbol, hit in (("AAPL", False), ("MSFT", False), ("AAPL", True)):
        query = QueryRecord(
            query_type="search_by_symbol",
            parameters={"symbol": symbol},
            result_summary=f"{symbol}: $100.00 (+1.00%) [synthetic]",
            execution_time_ms=1.5,
            cache_hit=hit,
        )
        await store.append_query(active.id, query)
    await store.update_state(active.id, context={"goal": "compare margins"})
    closed = await store.create_session(["BTC"], "crypto", user_id="alice")
    await store.append_query(
        closed.id, QueryRecord(query_type="search_by_coin", parameters={"symbol": "BTC"})
    )
    await store.close_session(closed.id)
    expired = await store.create_session(
        ["ETH"], "crypto", user_id="alice", ttl_hours=TINY_TTL_HOURS
    )
    bob = await store.create_session(["TSLA"], "equity", user_id="bob")
    return Seeded(str(active.id), str(closed.id), str(expired.id), str(bob.id))


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    """Four sessions in the test's database (the root conftest's file, copied in already
    migrated: these tests are about what the commands show, not about a first start)."""
    migrated_sqlite_url(tmp_path / "default")
    return with_store(_seed)
