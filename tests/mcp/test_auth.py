"""Who the caller is: hashed bearer tokens for HTTP, the local user for stdio."""

from __future__ import annotations

import getpass
import json
import stat
from pathlib import Path

import pytest

from fiml.core.config import Settings
from fiml.core.errors import AuthenticationError, ConfigurationError
from fiml.mcp import (
    BearerTokenIdentity,
    HashedTokenVerifier,
    Identity,
    TokenFile,
    hash_token,
    local_identity,
)


def test_the_token_file_stores_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    tokens = TokenFile([])
    alice_token = tokens.add_token("alice")
    admin_token = tokens.add_token("root", "admin")
    tokens.save(path)

    text = path.read_text(encoding="utf-8")

    assert alice_token not in text and admin_token not in text
    assert json.loads(text) == {
        "tokens": [
            {"user": "alice", "role": "user", "sha256": hash_token(alice_token)},
            {"user": "root", "role": "admin", "sha256": hash_token(admin_token)},
        ]
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_the_verifier_maps_a_token_to_its_user_and_role(tmp_path: Path) -> None:
    tokens = TokenFile([])
    alice_token = tokens.add_token("alice")
    admin_token = tokens.add_token("root", "admin")
    verifier = HashedTokenVerifier(tokens)

    alice = await verifier.verify_token(alice_token)
    admin = await verifier.verify_token(admin_token)

    assert alice is not None and admin is not None
    assert (alice.subject, alice.claims) == ("alice", {"fiml_role": "user"})
    assert (admin.subject, admin.claims) == ("root", {"fiml_role": "admin"})
    assert await verifier.verify_token("wrong") is None
    assert await verifier.verify_token(alice_token + "x") is None
    assert await verifier.verify_token("") is None


def test_a_saved_token_file_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    tokens = TokenFile([])
    token = tokens.add_token("alice")
    tokens.save(path)

    entry = TokenFile.load(path).match(token)

    assert entry is not None and (entry.user_id, entry.role) == ("alice", "user")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("not json", "cannot be read"),
        ('{"users": []}', "must hold"),
        ('{"tokens": [{"user": "a", "sha256": "abc"}]}', "64-digit hex"),
        ('{"tokens": [{"user": "a", "sha256": "' + "z" * 64 + '"}]}', "not hex"),
        ('{"tokens": [{"user": "a", "role": "god", "sha256": "' + "a" * 64 + '"}]}', "role"),
        ('{"tokens": [{"user": "", "sha256": "' + "a" * 64 + '"}]}', "user"),
    ],
    ids=["not-json", "no-tokens", "short-hash", "not-hex", "bad-role", "no-user"],
)
def test_a_malformed_token_file_is_a_configuration_error(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(body, encoding="utf-8")

    with pytest.raises(ConfigurationError, match=expected):
        TokenFile.load(path)


def test_a_missing_token_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        TokenFile.load(tmp_path / "absent.json")


def test_the_stdio_user_is_fiml_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIML_USER", "analyst_001")

    assert local_identity(Settings()) == Identity("analyst_001", "user")


def test_the_stdio_user_defaults_to_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIML_USER", raising=False)

    assert local_identity(Settings()).user_id == getpass.getuser()


def test_without_a_verified_token_there_is_no_http_caller() -> None:
    with pytest.raises(AuthenticationError):
        BearerTokenIdentity().current()
