"""The Celery app: sync tasks registered under their names, beat schedule from settings."""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any

from fiml.core.config import Settings
from fiml.sessions import tasks
from fiml.sessions.tasks import TASK_NAMES, build_beat_schedule, create_celery_app


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **overrides)


def test_beat_schedule_names_each_task_with_its_interval(tmp_path: Path) -> None:
    schedule = build_beat_schedule(settings(tmp_path))

    assert {name: (e["task"], e["schedule"]) for name, e in schedule.items()} == {
        "cleanup-expired-sessions": (
            "fiml.sessions.tasks.cleanup_expired_sessions",
            timedelta(hours=1),
        ),
        "delete-old-archived-sessions": (
            "fiml.sessions.tasks.delete_old_archived_sessions",
            timedelta(days=1),
        ),
        "generate-session-metrics": (
            "fiml.sessions.tasks.generate_session_metrics",
            timedelta(days=1),
        ),
    }
    assert schedule["cleanup-expired-sessions"]["options"] == {"expires": 3600.0}


def test_cleanup_interval_comes_from_the_settings(tmp_path: Path) -> None:
    schedule = build_beat_schedule(settings(tmp_path, session_cleanup_interval_minutes=15))

    assert schedule["cleanup-expired-sessions"]["schedule"] == timedelta(minutes=15)


def test_app_registers_sync_tasks_and_merges_the_schedule(tmp_path: Path) -> None:
    custom = settings(
        tmp_path, celery_broker_url="redis://127.0.0.1:6379/13", session_cleanup_interval_minutes=5
    )
    app = create_celery_app(custom)

    assert app.conf.broker_url == "redis://127.0.0.1:6379/13"
    assert app.conf.beat_schedule == build_beat_schedule(custom)
    for name in TASK_NAMES.values():
        task = app.tasks[name]
        assert not inspect.iscoroutinefunction(task.run), f"{name} must be a sync function"
    assert tasks.app.conf.beat_schedule == tasks.CELERY_BEAT_SCHEDULE
    assert tasks.cleanup_expired_sessions.name == TASK_NAMES["cleanup_expired_sessions"]
    assert tasks.delete_old_archived_sessions.name.endswith("delete_old_archived_sessions")
    assert tasks.generate_session_metrics.name.endswith("generate_session_metrics")
