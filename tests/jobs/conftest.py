"""Job tests: every deployment, and a Redis database of their own for locks and Celery."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.conftest import require_service, reset_redis

JOBS_REDIS_URL = os.environ.get("FIML_TEST_JOBS_REDIS_URL", "redis://127.0.0.1:6379/13")
"""Broker and lock database of the job tests, flushed around them."""


@pytest.fixture
async def jobs_redis() -> AsyncIterator[str]:
    """The job tests' Redis URL, emptied before and after the test."""
    require_service("Redis", JOBS_REDIS_URL, 6379)
    await reset_redis(JOBS_REDIS_URL)
    yield JOBS_REDIS_URL
    await reset_redis(JOBS_REDIS_URL)
