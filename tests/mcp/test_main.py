"""``python -m fiml.mcp``: the ``fiml serve`` command under another name.

Same help, same options and defaults reaching the server, the same one-line refusals; the
documented ``--http --stateless ...`` spelling runs as a real process in
``tests/mcp/test_http.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fiml.mcp import TokenFile
from fiml.mcp.__main__ import main
from tests.cli.conftest import invoke

HTTP_ARGS = ["--http", "--stateless", "--host", "0.0.0.0", "--port", "9123", "--no-jobs"]


def test_the_help_is_fiml_serve_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")

    assert main(["--help"]) == 0

    ours = capsys.readouterr().out
    theirs = invoke("serve", "--help").stdout
    assert "Usage: python -m fiml.mcp [OPTIONS]" in ours
    renamed = ours.replace("python -m fiml.mcp", "fiml serve")
    assert [line.rstrip() for line in renamed.splitlines()] == [
        line.rstrip() for line in theirs.splitlines()
    ]
    for option in ("--http", "--stateless", "--tokens", "--jobs", "--offline"):
        assert option in ours


def _recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the server: each run records what it was asked to serve."""
    import fiml.mcp.server

    calls: list[dict[str, Any]] = []

    def record(settings: Any, **options: Any) -> None:
        calls.append({"market_provider": settings.market_provider, **options})

    monkeypatch.setattr(fiml.mcp.server, "run_server", record)
    return calls


@pytest.mark.parametrize(
    "args", [[], HTTP_ARGS, ["--offline", "--jobs"]], ids=["defaults", "http", "offline"]
)
def test_the_options_reach_the_server_as_from_fiml_serve(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = ["--tokens", str(tmp_path / "tokens.json")] if args else []
    calls = _recorded(monkeypatch)

    assert main([*args, *tokens]) == 0
    assert invoke("serve", *args, *tokens).exit_code == 0

    assert len(calls) == 2
    assert calls[0] == calls[1]
    if args == HTTP_ARGS:
        assert calls[0]["transport"] == "http"
        assert (calls[0]["host"], calls[0]["port"], calls[0]["stateless"]) == (
            "0.0.0.0",
            9123,
            True,
        )
        assert calls[0]["jobs"] is False


def test_an_unknown_option_is_refused_and_nothing_is_served(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _recorded(monkeypatch)

    assert main(["--add-token", "alice"]) == 2

    assert calls == []
    assert "No such option: --add-token" in capsys.readouterr().err


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
