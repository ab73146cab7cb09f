"""``fiml cleanup`` says what it left behind, and ``fiml sessions quarantined`` lists it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as redis

from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.store import SessionStore
from tests.cli.conftest import TINY_TTL_HOURS, assert_one_line_error, invoke, ok_json, with_store
from tests.conftest import settings_for

KEYS = rk.RedisKeyspace()
"""The keys of the tests' deployment (the default key prefix)."""


@pytest.fixture
def tiered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Redis + PostgreSQL for the CLI, emptied; two expired sessions, one poisoned with a
    value PostgreSQL cannot hold. Returns the poisoned session's id."""
    settings = asyncio.run(settings_for("redis+postgres", tmp_path))
    monkeypatch.setenv("FIML_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FIML_REDIS_URL", str(settings.redis_url))

    async def seed(store: SessionStore) -> str:
        good = await store.create_session(["AAPL"], "equity", user_id="alice", ttl_hours=1)
        await store.close_session(good.id)
        bad = await store.create_session(
            ["BTC"], "crypto", user_id="alice", ttl_hours=TINY_TTL_HOURS
        )
        raw = redis.Redis.from_url(str(settings.redis_url))
        try:
            await raw.hset(KEYS.session_keys(bad.id).context, "note", '"a\\u0000b"')
        finally:
            await raw.aclose()
        return str(bad.id)

    return with_store(seed)


def test_cleanup_exits_1_naming_the_quarantine_and_the_list_shows_why(tiered: str) -> None:
    result = invoke("cleanup", "--skip-retention", "--skip-metrics", "--json")

    assert result.exit_code == 1, result.output
    [stats] = json.loads(result.stdout)
    assert (stats["archived"], stats["failed"], stats["quarantined"]) == (1, 0, 1)
    assert "fiml sessions quarantined" in result.stderr

    listed = ok_json("sessions", "quarantined")
    assert [entry["session_id"] for entry in listed] == [tiered]
    assert listed[0]["user_id"] == "alice" or listed[0]["user_id"] is None
    assert listed[0]["attempts"] == 1
    table = invoke("sessions", "quarantined")
    assert table.exit_code == 0 and tiered in table.stdout

    again = invoke("cleanup", "--skip-retention", "--skip-metrics", "--json")
    assert again.exit_code == 1
    assert ok_json("sessions", "quarantined")[0]["attempts"] == 2

    deleted = invoke("sessions", "delete", tiered, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert invoke("sessions", "quarantined").stdout.strip() == "no quarantined sessions"
    assert invoke("cleanup", "--skip-retention", "--skip-metrics").exit_code == 0


def test_cleanup_with_the_archive_down_exits_3_and_keeps_every_session(
    tiered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:9/none"  # nothing listens there
    with monkeypatch.context() as down:
        down.setenv("FIML_DATABASE_URL", url)
        down.setenv("FIML_DATABASE_TIMEOUT_SECONDS", "2")
        result = invoke("cleanup", "--skip-retention", "--skip-metrics")
    assert_one_line_error(result, 3, "PostgreSQL", "unavailable")

    result = invoke("cleanup", "--skip-retention", "--skip-metrics", "--json")
    [after] = json.loads(result.stdout)
    assert (after["archived"], after["quarantined"]) == (1, 1)  # both were kept meanwhile
