"""``python -m fiml.mcp``: its flags, token creation, and one-line configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fiml.mcp import TokenFile
from fiml.mcp.__main__ import main


def test_add_token_prints_a_token_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"

    assert main(["--tokens", str(path), "--add-token", "alice", "--role", "admin"]) == 0

    token = capsys.readouterr().out.strip()
    entry = TokenFile.load(path).match(token)
    assert entry is not None and (entry.user_id, entry.role) == ("alice", "admin")
    assert token not in path.read_text(encoding="utf-8")


def test_a_second_token_keeps_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.json"
    main(["--tokens", str(path), "--add-token", "alice"])
    first = capsys.readouterr().out.strip()
    main(["--tokens", str(path), "--add-token", "bob"])
    second = capsys.readouterr().out.strip()

    tokens = TokenFile.load(path)

    assert [e.user_id for e in tokens.entries] == ["alice", "bob"]
    assert tokens.match(first) is not None and tokens.match(second) is not None


def test_http_without_a_token_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIML_MCP_TOKENS_FILE", raising=False)

    assert main(["--http"]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: the HTTP transport needs a token file")


def test_http_with_an_empty_token_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    TokenFile([]).save(path)

    assert main(["--http", "--tokens", str(path)]) == 2

    assert "holds no tokens" in capsys.readouterr().err
