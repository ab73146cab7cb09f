"""Bearer tokens: stored only as SHA-256 hashes, compared in constant time against every entry."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fiml.mcp import HashedTokenVerifier, TokenFile, hash_token
from tests.cli.conftest import invoke
from tests.fuzz.harness import Harness

LIST_TOOLS = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


class CompareSpy:
    """Records every ``hmac.compare_digest`` call and answers as the real one does."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self._real = hmac.compare_digest

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return self._real(a, b)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CompareSpy]:
    recorder = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", recorder)
    yield recorder


def issued(tmp_path: Path, *users: str) -> dict[str, str]:
    """Tokens added through ``fiml tokens add``, as printed for the operator."""
    path = tmp_path / "tokens.json"
    tokens = {}
    for user in users:
        role = ["--role", "admin"] if user == "root" else []
        result = invoke("tokens", "add", user, *role, "--tokens", str(path))
        assert result.exit_code == 0, result.output
        tokens[user] = result.stdout.strip()
    return tokens


def test_the_token_file_holds_no_token_nor_any_piece_of_one(tmp_path: Path) -> None:
    tokens = issued(tmp_path, "alice", "bob", "root")
    stored = (tmp_path / "tokens.json").read_bytes()

    for token in tokens.values():
        assert len(token) >= 40
        assert token.encode() not in stored
        pieces = {token[i : i + 8] for i in range(len(token) - 7)}
        assert not any(piece.encode() in stored for piece in pieces)
        assert hash_token(token).encode() in stored
    entries = json.loads(stored)["tokens"]
    assert [(e["user"], e["role"]) for e in entries] == [
        ("alice", "user"),
        ("bob", "user"),
        ("root", "admin"),
    ]
    assert set(entries[0]) == {"user", "role", "sha256"}


def test_a_lookup_compares_digests_in_constant_time_against_every_entry(
    spy: CompareSpy, tmp_path: Path
) -> None:
    tokens = issued(tmp_path, "alice", "bob", "carol", "dave", "root")
    file = TokenFile.load(tmp_path / "tokens.json")
    first, last = tokens["alice"], tokens["root"]
    presented = {
        "first-entry": first,
        "last-entry": last,
        "unknown": "not-a-token",
        "first-char-changed": ("A" if first[0] != "A" else "B") + first[1:],
        "last-char-changed": first[:-1] + ("A" if first[-1] != "A" else "B"),
        "prefix-of-a-token": first[:8],
        "empty": "",
    }

    found = {}
    for name, token in presented.items():
        spy.calls.clear()
        entry = file.match(token)
        found[name] = entry.user_id if entry else None

        assert len(spy.calls) == len(file.entries), name
        assert {a for a, _ in spy.calls} == {hash_token(token).encode()}, name
        assert [b for _, b in spy.calls] == [e.sha256.encode() for e in file.entries], name
        assert all(len(a) == len(b) == 64 for a, b in spy.calls), name

    assert found == {
        "first-entry": "alice",
        "last-entry": "root",
        "unknown": None,
        "first-char-changed": None,
        "last-char-changed": None,
        "prefix-of-a-token": None,
        "empty": None,
    }


async def test_the_verifier_answers_through_the_constant_time_lookup(
    spy: CompareSpy, tmp_path: Path
) -> None:
    tokens = issued(tmp_path, "alice", "bob")
    verifier = HashedTokenVerifier(TokenFile.load(tmp_path / "tokens.json"))

    alice = await verifier.verify_token(tokens["alice"])
    stranger = await verifier.verify_token(tokens["alice"] + "x")

    assert alice is not None and alice.subject == "alice"
    assert stranger is None
    assert len(spy.calls) == 4


def test_every_http_request_is_checked_against_every_token(
    spy: CompareSpy, harness: Harness
) -> None:
    entries = len(harness.served.tokens)

    accepted = harness.post(LIST_TOOLS, "bob")
    calls_for_valid = len(spy.calls)
    refused = harness.post(LIST_TOOLS, token=harness.served.tokens["bob"][:-1] + "~")

    assert accepted.status_code == 200
    assert refused.status_code == 401
    assert calls_for_valid == entries
    assert len(spy.calls) == 2 * entries


@pytest.mark.parametrize("stolen", ["hash", "hash-uppercase", "token-file-line"])
def test_what_the_token_file_holds_is_not_a_token(harness: Harness, stolen: str) -> None:
    """Someone who reads the token file learns hashes, and a hash opens nothing."""
    digest = hash_token(harness.served.tokens["root"])
    presented = {
        "hash": digest,
        "hash-uppercase": digest.upper(),
        "token-file-line": json.dumps({"user": "root", "role": "admin", "sha256": digest}),
    }[stolen]

    response = harness.post(LIST_TOOLS, token=presented)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "bearer"])
def test_requests_without_a_usable_bearer_token_are_refused(harness: Harness, header: str) -> None:
    response = harness.portal.call(
        lambda: harness.served.http.post(
            "/mcp",
            content=LIST_TOOLS,
            headers={
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
                "Authorization": header,
            },
        )
    )

    assert response.status_code == 401
