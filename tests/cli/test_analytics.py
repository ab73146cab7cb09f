"""``fiml analytics stats|user|export`` over the sessions cleanup has recorded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.cli.conftest import Seeded, assert_one_line_error, invoke, ok_json


@pytest.fixture
def recorded(seeded: Seeded) -> Seeded:
    """The seeded sessions after a cleanup: alice's closed and expired ones are recorded."""
    assert invoke("cleanup").exit_code == 0
    return seeded


def test_stats_over_every_user(recorded: Seeded) -> None:
    stats = ok_json("analytics", "stats")

    assert stats["total_sessions"] == 4
    assert stats["active_sessions"] == 2
    assert stats["archived_sessions"] == 2
    assert stats["total_queries"] == 1
    assert stats["abandonment_rate"] == 0.5  # the expired one, without a query, was abandoned
    assert stats["query_type_distribution"] == {"search_by_coin": 1}
    assert stats["session_type_breakdown"] == {"crypto": 2}
    assert {a["asset"] for a in stats["top_assets"]} == {"BTC", "ETH"}


def test_stats_filtered_by_user_and_type(recorded: Seeded) -> None:
    bob = ok_json("analytics", "stats", "--user", "bob")
    equity = ok_json("analytics", "stats", "--type", "equity", "--days", "7")

    assert (bob["total_sessions"], bob["active_sessions"], bob["archived_sessions"]) == (1, 1, 0)
    assert "No finished sessions" in bob["message"]
    assert (equity["active_sessions"], equity["archived_sessions"]) == (2, 0)


def test_stats_as_a_table(recorded: Seeded) -> None:
    result = invoke("analytics", "stats", "--user", "alice")

    assert result.exit_code == 0, result.output
    assert "Session statistics (last 30 days, user alice)" in result.stdout
    assert "abandonment rate" in result.stdout and "50%" in result.stdout
    assert "search_by_coin 1" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--days", "0"], "invalid days 0.0"),
        (["--type", "bonds"], "invalid session_type 'bonds'"),
        (["--top", "0"], "invalid top 0"),
        (["--user", ""], "invalid user_id ''"),
    ],
)
def test_stats_with_bad_filters_is_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(invoke("analytics", "stats", *args), 2, fragment)


def test_one_users_summary(recorded: Seeded) -> None:
    summary = ok_json("analytics", "user", "alice")

    assert summary["user_id"] == "alice"
    assert summary["stats"]["archived_sessions"] == 2
    assert {s["session_id"] for s in summary["recent_sessions"]} == {
        recorded.closed,
        recorded.expired,
    }
    table = invoke("analytics", "user", "alice")
    assert recorded.closed in table.stdout and "abandoned" in table.stdout
    assert "closed" in table.stdout


def test_export_json_to_stdout(recorded: Seeded) -> None:
    result = invoke("analytics", "export")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {s["session_id"] for s in document["sessions"]} == {recorded.closed, recorded.expired}
    assert document["stats"]["archived_sessions"] == 2
    assert document["filters"]["days"] == 30


def test_export_csv_to_a_file(recorded: Seeded, tmp_path: Path) -> None:
    result = invoke("analytics", "export", "--format", "csv", "--output", "out/metrics.csv")

    target = tmp_path / "out" / "metrics.csv"
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 2 sessions as csv to {target}"
    rows = list(csv.DictReader(target.read_text(encoding="utf-8").splitlines()))
    assert {r["session_id"] for r in rows} == {recorded.closed, recorded.expired}
    assert {r["user_id"] for r in rows} == {"alice"}


def test_export_to_a_file_shows_progress_on_a_terminal(
    recorded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")

    result = invoke("analytics", "export", "--output", "metrics.json")

    assert result.exit_code == 0, result.output
    assert "exporting json" in result.stderr
    assert "exporting" not in result.stdout


def test_export_anywhere_the_operator_can_write(
    recorded: Seeded, tmp_path_factory: pytest.TempPathFactory
) -> None:
    target = tmp_path_factory.mktemp("elsewhere") / "alice.json"

    written = ok_json("analytics", "export", "--user", "alice", "--output", str(target))

    assert written == {"path": str(target), "format": "json", "sessions": 2}
    assert len(json.loads(target.read_text(encoding="utf-8"))["sessions"]) == 2


def test_export_in_an_unknown_format_is_one_line(recorded: Seeded, tmp_path: Path) -> None:
    result = invoke("analytics", "export", "--format", "xml", "--output", "x.xml")

    assert_one_line_error(result, 2, "invalid format 'xml'")
    assert not (tmp_path / "x.xml").exists()


def test_export_onto_a_directory_is_one_line(recorded: Seeded, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()

    result = invoke("analytics", "export", "--output", "taken")

    assert_one_line_error(result, 2, "invalid path 'taken': is a directory")
