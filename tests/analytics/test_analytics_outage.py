"""Analytics with PostgreSQL unreachable: a StorageUnavailableError naming it, never a
driver traceback; once PostgreSQL is back the same objects work again.

PostgreSQL is reached through a TCP proxy that the test cuts (the shared server itself is
never touched).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from fiml.core.errors import StorageUnavailableError
from fiml.sessions import SessionStore
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.models import Session, SessionType, utcnow
from tests.conftest import require_postgres, settings_for, sql_archive
from tests.reliability.services import TcpProxy


@pytest.mark.timeout(60)
async def test_analytics_fail_as_a_storage_error_while_postgres_is_cut(tmp_path: Path) -> None:
    settings = await settings_for("postgres", tmp_path, database_timeout_seconds=2)
    pg = await require_postgres()
    async with TcpProxy.in_front_of(pg) as proxy:
        through_proxy = settings.model_copy(update={"database_url": proxy.url_through(pg)})
        async with SessionStore(through_proxy) as store:
            analytics = SessionAnalytics(store)
            now = utcnow()
            finished = Session(
                user_id="u1",
                type=SessionType.EQUITY,
                assets=["AAPL"],
                created_at=now - timedelta(hours=2),
                expires_at=now - timedelta(hours=1),
            )
            await analytics.record_session_metrics(finished)
            assert (await analytics.get_session_stats(user_id="u1"))["total_sessions"] == 1

            await proxy.cut()
            await sql_archive(store).engine.dispose()  # no pooled connection survives the cut
            calls = [
                analytics.get_session_stats(user_id="u1"),
                analytics.get_user_session_summary("u1"),
                analytics.export_session_metrics("csv"),
                analytics.record_session_metrics(finished),
                analytics.record_archived_metrics(),
            ]
            for call in calls:
                with pytest.raises(StorageUnavailableError) as caught:
                    await call
                assert caught.value.backend == "postgresql"

            await proxy.restore()
            assert (await analytics.get_session_stats(user_id="u1"))["total_sessions"] == 1
