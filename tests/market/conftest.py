"""Shared fixtures: provider response bodies, a strict HTTP mock, and a real Redis."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from redis.asyncio import Redis
from redis.exceptions import RedisError

FIXTURES = Path(__file__).parent / "fixtures"
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def load_json() -> Callable[[str], Any]:
    """Read a provider response body from ``tests/market/fixtures``."""

    def load(name: str) -> Any:
        return json.loads((FIXTURES / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def http_mock() -> Iterator[respx.MockRouter]:
    """Every HTTP request must match a route; there is no network but localhost."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    """A client on Redis db 15, flushed before and after; skips (fails under CI) if absent."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        message = f"Redis is unreachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()
