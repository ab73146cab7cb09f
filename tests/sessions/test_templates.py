"""Session templates, on every deployment in ``STORE_KINDS``, and the migration that adds
them and the shares (0007)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, text

from fiml.core.errors import (
    ContextValueError,
    InvalidCursorError,
    InvalidInputError,
    InvalidSessionTypeError,
    InvalidTTLError,
)
from fiml.sessions import SessionStore, SessionType
from fiml.sessions.db import create_engine
from fiml.sessions.schema import alembic_config, drop_schema, upgrade_schema, verify_schema
from fiml.sessions.templates import MAX_TEMPLATES, SessionTemplates
from tests.conftest import require_postgres, sqlite_url

WATCH: dict[str, Any] = {
    "name": "watch",
    "assets": ["aapl", "MSFT"],
    "session_type": "equity",
    "tags": ["daily"],
    "ttl_hours": 3,
    "preferences": {"currency": "EUR", "chart": {"days": 30}},
}


async def test_a_saved_template_is_found_by_its_owner_only(store: SessionStore) -> None:
    templates = SessionTemplates(store)

    saved = await templates.save("alice", **WATCH)
    found = await templates.get("alice", "watch")

    assert found == saved
    assert (found.assets, found.session_type, found.tags) == (
        ["AAPL", "MSFT"],
        SessionType.EQUITY,
        ["daily"],
    )
    assert (found.ttl_hours, found.preferences) == (3, WATCH["preferences"])
    with pytest.raises(InvalidInputError) as missing:
        await templates.get("bob", "watch")
    assert missing.value.field == "template"
    assert (await templates.list("bob")).templates == []


async def test_saving_a_name_again_replaces_that_template(store: SessionStore) -> None:
    templates = SessionTemplates(store)
    await templates.save("alice", **WATCH)

    await templates.save("alice", name="watch", assets=["BTC"], session_type="crypto")

    found = await templates.get("alice", "watch")
    assert (found.assets, found.tags, found.ttl_hours, found.preferences) == (["BTC"], [], None, {})
    assert [t.name for t in (await templates.list("alice")).templates] == ["watch"]


async def test_templates_list_in_name_order_a_page_at_a_time(store: SessionStore) -> None:
    templates = SessionTemplates(store)
    for name in ("b", "a", "d", "c", "e"):
        await templates.save("alice", name=name, assets=["AAPL"], session_type="equity")
    await templates.save("bob", name="bb", assets=["AAPL"], session_type="equity")

    names: list[str] = []
    cursor = None
    while True:
        page = await templates.list("alice", limit=2, cursor=cursor)
        names += [t.name for t in page.templates]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert names == ["a", "b", "c", "d", "e"]
    for bad in ("\ud800", " a", 3, "x" * 65):
        with pytest.raises(InvalidCursorError):
            await templates.list("alice", cursor=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", "", InvalidInputError),
        ("name", "x" * 65, InvalidInputError),
        ("name", "tab\there", InvalidInputError),
        ("assets", [], InvalidInputError),
        ("assets", ["A"] * 51, InvalidInputError),
        ("session_type", "stocks", InvalidSessionTypeError),
        ("tags", ["t"] * 21, InvalidInputError),
        ("ttl_hours", 0, InvalidTTLError),
        ("ttl_hours", 10_000, InvalidTTLError),
        ("preferences", [1], ContextValueError),
        ("preferences", {"big": "x" * 17_000}, ContextValueError),
        ("preferences", {"": 1}, ContextValueError),
    ],
)
async def test_a_bad_field_is_refused_by_name_and_saves_nothing(
    store: SessionStore, field: str, value: Any, error: type[Exception]
) -> None:
    templates = SessionTemplates(store)

    with pytest.raises(error) as refused:
        await templates.save("alice", **{**WATCH, field: value})

    assert isinstance(refused.value, InvalidInputError)
    assert refused.value.field.startswith(field)
    assert (await templates.list("alice")).templates == []


async def test_a_user_keeps_at_most_max_templates(store: SessionStore) -> None:
    templates = SessionTemplates(store)
    for n in range(MAX_TEMPLATES):
        await templates.save("alice", name=f"t{n:03}", assets=["AAPL"], session_type="equity")

    with pytest.raises(InvalidInputError) as full:
        await templates.save("alice", name="one-more", assets=["AAPL"], session_type="equity")

    assert full.value.field == "name"
    await templates.save("alice", name="t000", assets=["BTC"], session_type="crypto")  # replaces
    await templates.save("bob", name="one-more", assets=["AAPL"], session_type="equity")
    assert (await templates.get("alice", "t000")).assets == ["BTC"]


async def test_a_session_created_with_preferences_holds_them(store: SessionStore) -> None:
    created = await store.create_session(
        ["AAPL"], "equity", user_id="alice", preferences={"currency": "EUR"}
    )

    stored = await store.get_session(created.id)

    assert stored is not None and dict(stored.state.preferences) == {"currency": "EUR"}
    with pytest.raises(ContextValueError):
        await store.create_session(["AAPL"], "equity", user_id="a", preferences={"": 1})


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migration_0007_adds_and_its_downgrade_removes_the_two_tables(
    kind: str, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path) if kind == "sqlite" else await require_postgres()
    engine = create_engine(url)
    try:
        await drop_schema(engine)
        await upgrade_schema(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO session_shares (session_id, reader_id, owner_id, shared_at) "
                    "VALUES ('00000000-0000-4000-8000-000000000001', 'bob', 'alice', "
                    "'2026-12-02 13:00:00')"
                )
            )

        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0003")

        report = await verify_schema(engine)
        assert report.current_revision == "0003"
        # With 0007 undone, so are the revisions after it (their tables are missing too).
        assert {"session_shares", "session_templates"} <= set(report.missing_tables)
        assert "sessions" not in report.missing_tables

        await upgrade_schema(engine)
        report = await verify_schema(engine)
        assert report.ok
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT count(*) FROM session_shares"))
            assert rows.scalar_one() == 0
    finally:
        await drop_schema(engine)
        await engine.dispose()
