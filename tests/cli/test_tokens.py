"""``fiml tokens add|list|revoke``: the HTTP transport's token file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fiml.mcp import TokenFile
from tests.cli.conftest import assert_one_line_error, invoke, ok_json


def test_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"

    result = invoke("tokens", "add", "alice", "--role", "admin", "--tokens", str(path))

    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert len(result.stdout.splitlines()) == 1
    entry = TokenFile.load(path).match(token)
    assert entry is not None and (entry.user_id, entry.role) == ("alice", "admin")
    assert token not in path.read_text(encoding="utf-8")
    assert "token for alice (admin) added" in result.stderr


def test_a_second_token_keeps_the_first(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = ok_json("tokens", "add", "alice", "--tokens", str(path))
    second = ok_json("tokens", "add", "bob", "--tokens", str(path))

    tokens = TokenFile.load(path)

    assert [e.user_id for e in tokens.entries] == ["alice", "bob"]
    assert tokens.match(first["token"]) is not None and tokens.match(second["token"]) is not None
    assert (second["user"], second["role"], second["tokens_file"]) == ("bob", "user", str(path))


def test_the_token_file_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env-tokens.json"
    monkeypatch.setenv("FIML_MCP_TOKENS_FILE", str(path))

    token = invoke("tokens", "add", "carol").stdout.strip()

    assert TokenFile.load(path).match(token) is not None


def test_list_shows_users_and_roles_but_no_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = ok_json("tokens", "add", "alice", "--role", "admin", "--tokens", str(path))["token"]
    ok_json("tokens", "add", "bob", "--tokens", str(path))

    listed = ok_json("tokens", "list", "--tokens", str(path))
    table = invoke("tokens", "list", "--tokens", str(path))

    assert [(e["user"], e["role"]) for e in listed] == [("alice", "admin"), ("bob", "user")]
    assert "alice" in table.stdout and "bob" in table.stdout
    assert alice not in table.stdout + str(listed)


def test_revoke_removes_every_token_of_a_user(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = [ok_json("tokens", "add", "alice", "--tokens", str(path))["token"] for _ in range(2)]
    bob = ok_json("tokens", "add", "bob", "--tokens", str(path))["token"]

    revoked = ok_json("tokens", "revoke", "alice", "--tokens", str(path))

    assert revoked["revoked"] == 2
    tokens = TokenFile.load(path)
    assert all(tokens.match(t) is None for t in alice)
    assert tokens.match(bob) is not None


def test_revoking_a_user_without_tokens_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    ok_json("tokens", "add", "alice", "--tokens", str(path))

    assert_one_line_error(invoke("tokens", "revoke", "zed", "--tokens", str(path)), 1, "zed")


def test_without_a_token_file_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIML_MCP_TOKENS_FILE", raising=False)

    assert_one_line_error(invoke("tokens", "add", "alice"), 2, "pass --tokens FILE")


def test_an_unknown_role_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"

    result = invoke("tokens", "add", "alice", "--role", "root", "--tokens", str(path))

    assert_one_line_error(result, 2, "invalid role 'root'")
    assert not path.exists()


def test_a_missing_or_broken_token_file_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")

    missing = invoke("tokens", "list", "--tokens", str(tmp_path / "missing.json"))
    unreadable = invoke("tokens", "list", "--tokens", str(broken))

    assert_one_line_error(missing, 2, "does not exist")
    assert_one_line_error(unreadable, 2, "cannot be read")
