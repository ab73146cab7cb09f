"""``fiml cleanup``: the session jobs, run once in this process."""

from __future__ import annotations

import pytest

from fiml.sessions.models import SessionStatus
from fiml.sessions.store import SessionStore
from tests.cli.conftest import Seeded, invoke, ok_json, with_store


def _statuses(*session_ids: str) -> list[SessionStatus | None]:
    async def read(store: SessionStore) -> list[SessionStatus | None]:
        found = [await store.get_session(sid, history_limit=0) for sid in session_ids]
        return [None if s is None else s.status for s in found]

    return with_store(read)


def test_cleanup_archives_closed_and_expired_sessions_and_records_them(seeded: Seeded) -> None:
    cleanup, retention, metrics = ok_json("cleanup")

    assert (cleanup["job"], cleanup["archived"], cleanup["metrics_recorded"]) == (
        "cleanup_expired_sessions",
        2,
        2,
    )
    assert (retention["job"], retention["deleted"]) == ("delete_old_archived_sessions", 0)
    assert (metrics["job"], metrics["recorded"]) == ("generate_session_metrics", 0)
    assert _statuses(seeded.closed, seeded.expired, seeded.active, seeded.bob) == [
        SessionStatus.ARCHIVED,
        SessionStatus.ARCHIVED,
        SessionStatus.ACTIVE,
        SessionStatus.ACTIVE,
    ]


def test_cleanup_again_finds_nothing_to_do(seeded: Seeded) -> None:
    ok_json("cleanup")

    again = ok_json("cleanup", "--skip-retention", "--skip-metrics")

    assert len(again) == 1
    assert again[0]["archived"] == 0


def test_cleanup_prints_a_table_of_what_each_job_did(seeded: Seeded) -> None:
    result = invoke("cleanup")

    assert result.exit_code == 0, result.output
    assert "cleanup_expired_sessions" in result.stdout
    assert "archived 2" in result.stdout
    assert "delete_old_archived_sessions" in result.stdout


def test_retention_days_deletes_old_archives(seeded: Seeded) -> None:
    results = ok_json("cleanup", "--retention-days", "0", "--skip-metrics")

    assert [r["job"] for r in results] == [
        "cleanup_expired_sessions",
        "delete_old_archived_sessions",
    ]
    assert results[1]["deleted"] == 2
    assert _statuses(seeded.closed, seeded.expired, seeded.active) == [
        None,
        None,
        SessionStatus.ACTIVE,
    ]


def test_a_negative_retention_is_refused_in_one_line(seeded: Seeded) -> None:
    result = invoke("cleanup", "--retention-days", "-1")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid retention_days -1.0")
    assert len(result.stderr.splitlines()) == 1


def test_cleanup_shows_progress_on_a_terminal(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")

    result = invoke("cleanup")

    assert result.exit_code == 0, result.output
    assert "recording analytics facts" in result.stderr
    assert "3/3" in result.stderr
