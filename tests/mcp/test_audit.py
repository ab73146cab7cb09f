"""The audit trail: every lifecycle action and every refusal, one record each, naming who.

Records are read from the ``fiml.audit`` logger, as an operator's handler would get them;
none may carry a context value or a token.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fiml.core.audit import AUDIT_LOGGER, SYSTEM_ACTOR, acting_as, write_audit_to
from fiml.core.logs import event_fields
from fiml.mcp import HashedTokenVerifier, TokenFile
from fiml.mcp.oauth import CombinedVerifier
from fiml.sessions import SessionStore
from tests.mcp.conftest import Connect, fails, ok

SECRET = "the-context-value-nobody-may-log"


@pytest.fixture
def audited(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    return caplog


def trail(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The audit records so far, as their fields."""
    return [event_fields(r) for r in caplog.records if r.name == AUDIT_LOGGER]


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[Any, ...]]:
    return [(r["actor"], r["action"], r["outcome"], r.get("tool")) for r in trail(caplog)]


async def test_each_lifecycle_action_is_recorded_with_its_actor(
    connect: Connect, audited: pytest.LogCaptureFixture
) -> None:
    async with connect("alice") as alice:
        created = await ok(alice, "create-analysis-session", assets=["AAPL"], session_type="equity")
        sid = created["session_id"]
        await ok(alice, "update-session-context", session_id=sid, context={"note": SECRET})
        await ok(alice, "extend-session", session_id=sid, hours=2)
        await ok(alice, "close-analysis-session", session_id=sid)

    assert lines(audited) == [
        ("alice", "create", "ok", None),
        ("alice", "extend", "ok", None),
        ("alice", "close", "ok", None),
    ]
    assert {r["session_id"] for r in trail(audited)} == {sid}
    assert all(r["event"] == f"audit.{r['action']}" and r["at"] for r in trail(audited))
    assert SECRET not in audited.text


async def test_a_refusal_names_who_was_refused_what_and_why(
    connect: Connect, audited: pytest.LogCaptureFixture
) -> None:
    async with connect("alice") as alice, connect("mallory") as mallory:
        created = await ok(alice, "create-analysis-session", assets=["AAPL"], session_type="equity")
        sid = created["session_id"]
        await fails(mallory, "get-session-info", session_id=sid)
        await fails(mallory, "update-session-context", session_id=sid, context={"x": SECRET})
        await fails(alice, "extend-session", session_id=sid, hours=10_000)

    refused = [r for r in trail(audited) if r["action"] == "refused"]
    assert [(r["actor"], r["tool"], r["error"], r["session_id"]) for r in refused] == [
        ("mallory", "get-session-info", "SessionNotFoundError", sid),
        ("mallory", "update-session-context", "SessionNotFoundError", sid),
        ("alice", "extend-session", "InvalidTTLError", sid),
    ]
    assert SECRET not in audited.text


async def test_jobs_act_as_the_system_and_commands_as_who_ran_them(
    session_store: SessionStore, audited: pytest.LogCaptureFixture
) -> None:
    with acting_as("cli:ops"):
        doomed = await session_store.create_session(["AAPL"], "equity", user_id="bob")
        kept = await session_store.create_session(["MSFT"], "equity", user_id="bob")
        await session_store.close_session(kept.id)
        assert await session_store.delete_session(doomed.id)
        assert not await session_store.delete_session(doomed.id)
    await session_store.cleanup_expired_sessions()  # default actor: the system
    await session_store.delete_old_archived_sessions(retention_days=0)

    assert lines(audited) == [
        ("cli:ops", "create", "ok", None),
        ("cli:ops", "create", "ok", None),
        ("cli:ops", "close", "ok", None),
        ("cli:ops", "delete", "ok", None),
        ("cli:ops", "delete", "absent", None),
        (SYSTEM_ACTOR, "archive", "ok", None),
        (SYSTEM_ACTOR, "retention", "ok", None),
    ]
    archive, retention = trail(audited)[-2:]
    assert (archive["count"], retention["count"]) == (1, 1)


async def test_a_refused_bearer_token_is_recorded_without_the_token(
    audited: pytest.LogCaptureFixture,
) -> None:
    file = TokenFile([])
    good = file.add_token("alice")
    verifier = CombinedVerifier(HashedTokenVerifier(file), None)

    assert await verifier.verify_token(good) is not None
    assert await verifier.verify_token("forged-token-value") is None
    assert await verifier.verify_token("a.b.c") is None  # a JWT where no provider is set

    assert [(r["actor"], r["action"], r["token_kind"]) for r in trail(audited)] == [
        (None, "auth_refused", "file"),
        (None, "auth_refused", "jwt"),
    ]
    assert "forged-token-value" not in audited.text
    assert good not in audited.text


async def test_the_trail_can_go_to_a_file_of_its_own(
    session_store: SessionStore, tmp_path: Path
) -> None:
    audit_logger = logging.getLogger(AUDIT_LOGGER)
    path = tmp_path / "audit.jsonl"
    try:
        write_audit_to(path)
        write_audit_to(path)  # once per file, however often a process asks
        with acting_as("carol"):
            session = await session_store.create_session(["AAPL"], "equity", user_id="carol")
    finally:
        for handler in list(audit_logger.handlers):
            audit_logger.removeHandler(handler)
            handler.close()
        audit_logger.propagate = True
        audit_logger.setLevel(logging.NOTSET)

    [line] = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert (record["actor"], record["action"], record["session_id"]) == (
        "carol",
        "create",
        str(session.id),
    )
    assert record["logger"] == AUDIT_LOGGER and record["event"] == "audit.create"
