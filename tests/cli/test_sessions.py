"""``fiml sessions list|show|extend|close|archive|delete`` on any user's sessions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from fiml.cli.failures import EXIT_BAD_INPUT
from fiml.sessions.models import SessionStatus
from fiml.sessions.store import SessionStore
from tests.cli.conftest import (
    UNKNOWN_ID,
    Seeded,
    assert_one_line_error,
    invoke,
    ok_json,
    with_store,
)


def _status(session_id: str) -> SessionStatus | None:
    async def read(store: SessionStore) -> SessionStatus | None:
        session = await store.get_session(session_id, history_limit=0)
        return None if session is None else session.status

    return with_store(read)


def test_list_shows_a_users_unarchived_sessions_newest_first(seeded: Seeded) -> None:
    listed = ok_json("sessions", "list", "--user", "alice")

    assert listed["user_id"] == "alice"
    assert [s["id"] for s in listed["sessions"]] == [seeded.expired, seeded.closed, seeded.active]
    assert [s["status"] for s in listed["sessions"]] == ["expired", "closed", "active"]
    assert listed["sessions"][2]["total_queries"] == 3
    assert listed["next_cursor"] is None


def test_list_as_a_table_names_every_session(seeded: Seeded) -> None:
    result = invoke("sessions", "list", "--user", "alice", columns=80)

    assert result.exit_code == 0, result.output
    for session_id in (seeded.active, seeded.closed, seeded.expired):
        assert session_id in result.stdout
    assert seeded.bob not in result.stdout
    assert "Sessions of alice" in result.stdout


def test_list_pages_with_the_cursor(seeded: Seeded) -> None:
    first = ok_json("sessions", "list", "--user", "alice", "--limit", "2")
    rest = ok_json(
        "sessions", "list", "--user", "alice", "--limit", "2", "--cursor", first["next_cursor"]
    )

    assert [s["id"] for s in first["sessions"]] == [seeded.expired, seeded.closed]
    assert [s["id"] for s in rest["sessions"]] == [seeded.active]
    assert rest["next_cursor"] is None
    table = invoke("sessions", "list", "--user", "alice", "--limit", "2")
    assert f"--cursor {first['next_cursor']}" in table.stdout


def test_list_hides_archived_sessions_unless_asked(seeded: Seeded) -> None:
    assert invoke("sessions", "archive", seeded.closed).exit_code == 0

    default = ok_json("sessions", "list", "--user", "alice")
    everything = ok_json("sessions", "list", "--user", "alice", "--include-archived")

    assert seeded.closed not in [s["id"] for s in default["sessions"]]
    archived = [s for s in everything["sessions"] if s["id"] == seeded.closed]
    assert archived and archived[0]["status"] == "archived"


def test_list_defaults_to_the_local_user(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIML_USER", "bob")

    listed = ok_json("sessions", "list")

    assert listed["user_id"] == "bob"
    assert [s["id"] for s in listed["sessions"]] == [seeded.bob]


def test_list_rejects_a_cursor_it_did_not_make(seeded: Seeded) -> None:
    result = invoke("sessions", "list", "--user", "alice", "--cursor", "garbage")

    assert_one_line_error(result, 2, "invalid cursor")


def test_show_prints_details_context_and_recent_queries(seeded: Seeded) -> None:
    result = invoke("sessions", "show", seeded.active, columns=80)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert seeded.active in out and "alice" in out and "equity" in out
    assert "compare margins" in out
    assert "Recent queries (3 of 3)" in out
    assert out.count("[synthetic]") == 3
    assert "33%" in out  # one of three queries came from the cache


def test_show_as_json(seeded: Seeded) -> None:
    shown = ok_json("sessions", "show", seeded.active, "--queries", "2")

    assert shown["id"] == seeded.active
    assert shown["status"] == "active"
    assert shown["user_id"] == "alice"
    assert shown["state"]["context"] == {"goal": "compare margins"}
    history = shown["state"]["history"]
    assert history["total_queries"] == 3
    assert [q["parameters"]["symbol"] for q in history["queries"]] == ["MSFT", "AAPL"]


def test_show_reads_any_users_session(seeded: Seeded) -> None:
    assert ok_json("sessions", "show", seeded.bob)["user_id"] == "bob"


def test_extend_pushes_expiry_later(seeded: Seeded) -> None:
    before = ok_json("sessions", "show", seeded.active)["expires_at"]

    extended = ok_json("sessions", "extend", seeded.active, "--hours", "2")

    gained = datetime.fromisoformat(extended["expires_at"]) - datetime.fromisoformat(before)
    assert gained == timedelta(hours=2)
    assert extended["id"] == seeded.active


def test_extend_past_the_maximum_ttl_is_refused(seeded: Seeded) -> None:
    before = ok_json("sessions", "show", seeded.active)["expires_at"]

    result = invoke("sessions", "extend", seeded.active, "--hours", "1000")

    assert_one_line_error(result, 2, "invalid hours 1000")
    assert ok_json("sessions", "show", seeded.active)["expires_at"] == before


def test_close_makes_the_session_read_only(seeded: Seeded) -> None:
    result = invoke("sessions", "close", seeded.active)

    assert result.exit_code == 0, result.output
    assert f"{seeded.active} is closed" in result.stdout
    assert _status(seeded.active) is SessionStatus.CLOSED
    assert_one_line_error(invoke("sessions", "extend", seeded.active), 1, "is closed")


def test_archive_one_session(seeded: Seeded) -> None:
    outcomes = ok_json("sessions", "archive", seeded.active)

    assert outcomes == [{"session_id": seeded.active, "archived": True, "error": None}]
    assert _status(seeded.active) is SessionStatus.ARCHIVED
    again = invoke("sessions", "archive", seeded.active)
    assert again.exit_code == 0 and "was already archived" in again.stdout


def test_archive_every_session_of_a_user(seeded: Seeded) -> None:
    outcomes = ok_json("sessions", "archive", "--user", "alice")

    assert sorted(o["session_id"] for o in outcomes) == sorted(
        [seeded.active, seeded.closed, seeded.expired]
    )
    assert all(o["archived"] for o in outcomes)
    for session_id in (seeded.active, seeded.closed, seeded.expired):
        assert _status(session_id) is SessionStatus.ARCHIVED
    assert _status(seeded.bob) is SessionStatus.ACTIVE


def test_bulk_archive_reports_the_sessions_it_could_not_archive(seeded: Seeded) -> None:
    result = invoke("sessions", "archive", seeded.active, UNKNOWN_ID)

    assert result.exit_code == 1
    assert f"{seeded.active}: archived" in result.stdout
    assert f"{UNKNOWN_ID}: session {UNKNOWN_ID} not found" in result.stdout
    assert result.stderr.strip() == "error: 1 of 2 sessions were not archived"


def test_archive_with_one_bad_id_changes_nothing(seeded: Seeded) -> None:
    result = invoke("sessions", "archive", seeded.active, "not-a-uuid")

    assert_one_line_error(result, 2, "invalid session_id 'not-a-uuid'")
    assert _status(seeded.active) is SessionStatus.ACTIVE


def test_archive_needs_ids_or_a_user() -> None:
    assert_one_line_error(invoke("sessions", "archive"), 2, "--user")


def test_archive_shows_progress_on_a_terminal(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal

    result = invoke("sessions", "archive", "--user", "alice")

    assert result.exit_code == 0, result.output
    assert "archiving sessions" in result.stderr
    assert "archiving sessions" not in result.stdout


def test_progress_stays_off_stdout_with_json(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")

    result = invoke("sessions", "archive", "--user", "alice", "--json")

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3
    assert result.stderr == ""


def test_delete_with_yes(seeded: Seeded) -> None:
    deleted = ok_json("sessions", "delete", seeded.closed, "--yes")

    assert deleted == {"session_id": seeded.closed, "deleted": True}
    assert _status(seeded.closed) is None


def test_delete_asks_first_and_keeps_the_session_when_declined(seeded: Seeded) -> None:
    result = invoke("sessions", "delete", seeded.active, input="n\n")

    assert result.exit_code == 1
    assert f"Delete session {seeded.active} of alice (3 queries, active)?" in result.stderr
    assert "nothing deleted" in result.stderr
    assert _status(seeded.active) is SessionStatus.ACTIVE


def test_delete_goes_ahead_when_confirmed(seeded: Seeded) -> None:
    result = invoke("sessions", "delete", seeded.active, input="y\n")

    assert result.exit_code == 0, result.output
    assert f"{seeded.active} deleted" in result.stdout
    assert _status(seeded.active) is None


@pytest.mark.parametrize(
    "args",
    [
        ["show", UNKNOWN_ID],
        ["extend", UNKNOWN_ID],
        ["close", UNKNOWN_ID],
        ["archive", UNKNOWN_ID],
        ["delete", UNKNOWN_ID, "--yes"],
        ["delete", UNKNOWN_ID],
    ],
    ids=lambda args: " ".join(args[:1] + args[2:]),
)
def test_an_unknown_session_is_one_line(args: list[str]) -> None:
    result = invoke("sessions", *args)

    assert_one_line_error(result, 1, f"session {UNKNOWN_ID} not found")


@pytest.mark.parametrize("command", ["show", "extend", "close", "archive", "delete"])
def test_a_malformed_session_id_is_one_line(command: str) -> None:
    result = invoke("sessions", command, "12345")

    assert_one_line_error(result, 2, "invalid session_id '12345': not a valid UUID")


def test_search_finds_a_users_sessions_by_each_criterion(seeded: Seeded) -> None:
    def found(*criteria: str) -> list[str]:
        page = ok_json("sessions", "search", "--user", "alice", *criteria)
        assert page["user_id"] == "alice"
        return [s["id"] for s in page["sessions"]]

    assert found() == [seeded.expired, seeded.closed, seeded.active]
    assert found("--asset", "msft") == [seeded.active]
    assert found("--tag", "q3", "--text", "margins") == [seeded.active]
    assert found("--type", "crypto") == [seeded.expired, seeded.closed]
    assert found("--asset", "TSLA") == []  # bob's
    first = ok_json("sessions", "search", "--user", "alice", "--type", "crypto", "--limit", "1")
    rest = ok_json(
        "sessions",
        "search",
        "--user",
        "alice",
        "--type",
        "crypto",
        "--cursor",
        first["next_cursor"],
    )
    assert [s["id"] for s in rest["sessions"]] == [seeded.closed]
    table = invoke("sessions", "search", "--user", "alice", "--asset", "AAPL")
    assert seeded.active in table.stdout and seeded.closed not in table.stdout


def test_search_refuses_a_bad_criterion_in_one_line(seeded: Seeded) -> None:
    result = invoke("sessions", "search", "--user", "alice", "--since", "yesterday")
    assert_one_line_error(result, EXIT_BAD_INPUT, "since")
