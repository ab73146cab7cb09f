"""``fiml db create|upgrade|verify|drop`` through the shipped Alembic migrations, and the
refusal of every other command on a PostgreSQL schema that is not at head."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from fiml.cli.failures import EXIT_BAD_INPUT
from fiml.sessions.db import create_engine
from fiml.sessions.schema import drop_schema, head_revision, upgrade_schema
from tests.cli.conftest import assert_one_line_error, invoke, ok_json
from tests.conftest import require_postgres


def _verify() -> dict[str, object]:
    result = invoke("db", "verify", "--json")
    assert result.exit_code in (0, 1), result.output
    report: dict[str, object] = json.loads(result.stdout)
    assert report["ok"] is (result.exit_code == 0)
    return report


def test_verify_on_an_empty_database_fails_and_names_the_missing_tables(tmp_path: Path) -> None:
    result = invoke("db", "verify")

    assert result.exit_code == 1
    assert "missing table" in result.stdout and "sessions" in result.stdout
    assert "INCOMPLETE" in result.stdout
    report = _verify()
    assert report["database"] == f"SQLite file {tmp_path / 'default' / 'sessions.db'}"
    assert report["current_revision"] is None
    assert "sessions" in report["missing_tables"]  # type: ignore[operator]


def test_create_then_verify() -> None:
    created = ok_json("db", "create")

    assert created["revision"] == head_revision()
    report = _verify()
    assert report == {
        "database": created["database"],
        "ok": True,
        "current_revision": head_revision(),
        "head_revision": head_revision(),
        "missing_tables": [],
        "missing_columns": {},
    }
    assert "schema OK" in invoke("db", "verify").stdout


def test_upgrade_to_an_older_revision_then_to_the_newest() -> None:
    assert ok_json("db", "upgrade", "--revision", "0001")["revision"] == "0001"
    older = _verify()
    assert older["ok"] is False and older["current_revision"] == "0001"
    assert "session_metrics" in older["missing_tables"]  # type: ignore[operator]

    result = invoke("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert f"schema at revision {head_revision()}" in result.stdout
    assert _verify()["ok"] is True


def test_upgrade_to_an_unknown_revision_is_one_line() -> None:
    result = invoke("db", "upgrade", "--revision", "nope")

    assert result.exit_code != 0
    assert_one_line_error(result, result.exit_code, "nope")


def test_drop_with_yes_removes_every_table() -> None:
    ok_json("db", "create")

    dropped = ok_json("db", "drop", "--yes")

    assert dropped["dropped"] is True
    report = _verify()
    assert report["ok"] is False and report["current_revision"] is None


def test_drop_asks_and_keeps_everything_when_declined() -> None:
    ok_json("db", "create")

    result = invoke("db", "drop", input="n\n")

    assert result.exit_code == 1
    assert "Drop every FIML table" in result.stderr
    assert "nothing dropped" in result.stderr
    assert _verify()["ok"] is True


def test_drop_without_an_answer_drops_nothing() -> None:
    ok_json("db", "create")

    result = invoke("db", "drop")

    assert result.exit_code == 1
    assert _verify()["ok"] is True


def test_drop_goes_ahead_when_confirmed() -> None:
    ok_json("db", "create")

    result = invoke("db", "drop", input="y\n")

    assert result.exit_code == 0, result.output
    assert "every FIML table dropped" in result.stdout
    assert _verify()["ok"] is False


async def _postgres_at(revision: str, *, stamp: str | None = None) -> str:
    url = await require_postgres()
    engine = create_engine(url)
    try:
        await drop_schema(engine)
        await upgrade_schema(engine, revision)
        if stamp is not None:  # as if a newer FIML had migrated it
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :v"), {"v": stamp}
                )
    finally:
        await engine.dispose()
    return url


def test_an_outdated_postgres_is_refused_in_one_line_until_fiml_db_upgrade(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIML_DATABASE_URL", asyncio.run(_postgres_at("0002")))

    refused = invoke("sessions", "list", "--user", "x")

    assert_one_line_error(refused, EXIT_BAD_INPUT, "revision 0002", "`fiml db upgrade`")
    assert _verify()["current_revision"] == "0002"  # the refusal changed nothing
    upgraded = ok_json("db", "upgrade")
    assert upgraded["revision"] == head_revision()
    listed = invoke("sessions", "list", "--user", "x")
    assert listed.exit_code == 0, listed.output
    assert _verify()["ok"] is True


def test_upgrade_refuses_a_schema_of_a_newer_fiml_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIML_DATABASE_URL", asyncio.run(_postgres_at("head", stamp="9999")))

    for command in (["db", "upgrade"], ["sessions", "list", "--user", "x"]):
        refused = invoke(*command)
        assert_one_line_error(refused, EXIT_BAD_INPUT, "revision 9999", head_revision())

    assert _verify()["current_revision"] == "9999"
