"""Quote caches: one contract suite over every backend, then what each adds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fiml.core.errors import InvalidInputError, StorageUnavailableError
from fiml.market import (
    DEFAULT_QUOTE_KEY_PREFIX,
    MemoryQuoteCache,
    Quote,
    QuoteCache,
    RedisQuoteCache,
)

TTL_SECONDS = 30.0


def make_quote(symbol: str = "AAPL", price: float = 175.43) -> Quote:
    return Quote(
        symbol=symbol,
        name="Apple Inc.",
        asset_class="equity",
        price=price,
        currency="USD",
        change=3.95,
        change_percent=2.3,
        volume=58912300.0,
        market="NasdaqGS",
        as_of=datetime(2024, 5, 17, 20, 0, tzinfo=UTC),
        source="yahoo",
    )


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> QuoteCache:
    if request.param == "memory":
        return MemoryQuoteCache(TTL_SECONDS)
    redis_client: Redis = request.getfixturevalue("redis_client")
    return RedisQuoteCache(redis_client, TTL_SECONDS)


async def test_an_unknown_key_is_a_miss(cache: QuoteCache) -> None:
    assert await cache.get("equity:yahoo:AAPL:") is None


async def test_a_stored_quote_comes_back_equal(cache: QuoteCache) -> None:
    quote = make_quote()
    await cache.set("equity:yahoo:AAPL:", quote)
    assert await cache.get("equity:yahoo:AAPL:") == quote


async def test_set_replaces_the_earlier_quote(cache: QuoteCache) -> None:
    await cache.set("k", make_quote(price=1.0))
    await cache.set("k", make_quote(price=2.0))
    cached = await cache.get("k")
    assert cached is not None and cached.price == 2.0


async def test_keys_do_not_share_entries(cache: QuoteCache) -> None:
    await cache.set("equity:yahoo:AAPL:", make_quote("AAPL"))
    await cache.set("equity:yahoo:MSFT:", make_quote("MSFT"))
    cached = await cache.get("equity:yahoo:AAPL:")
    assert cached is not None and cached.symbol == "AAPL"


async def test_memory_entries_expire_after_the_ttl() -> None:
    clock = FakeMonotonic()
    cache = MemoryQuoteCache(TTL_SECONDS, clock=clock)
    await cache.set("k", make_quote())

    clock.now += TTL_SECONDS - 0.001
    assert await cache.get("k") is not None
    clock.now += 0.001
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_memory_set_restarts_the_ttl() -> None:
    clock = FakeMonotonic()
    cache = MemoryQuoteCache(TTL_SECONDS, clock=clock)
    await cache.set("k", make_quote())
    clock.now += TTL_SECONDS - 1
    await cache.set("k", make_quote())
    clock.now += TTL_SECONDS - 1
    assert await cache.get("k") is not None


async def test_memory_cache_evicts_the_least_recently_used_when_full() -> None:
    cache = MemoryQuoteCache(TTL_SECONDS, max_entries=2)
    await cache.set("a", make_quote("A"))
    await cache.set("b", make_quote("B"))
    await cache.get("a")
    await cache.set("c", make_quote("C"))

    assert len(cache) == 2
    assert await cache.get("b") is None
    assert await cache.get("a") is not None
    assert await cache.get("c") is not None


@pytest.mark.parametrize(("ttl", "max_entries"), [(0, 10), (-1, 10), (1, 0)])
def test_memory_cache_rejects_impossible_settings(ttl: float, max_entries: int) -> None:
    with pytest.raises(InvalidInputError):
        MemoryQuoteCache(ttl, max_entries=max_entries)


async def test_redis_stores_json_under_the_prefix_with_an_expiry(redis_client: Redis) -> None:
    cache = RedisQuoteCache(redis_client, TTL_SECONDS)
    await cache.set("equity:yahoo:AAPL:", make_quote())

    key = DEFAULT_QUOTE_KEY_PREFIX + "equity:yahoo:AAPL:"
    raw = await redis_client.get(key)
    assert raw is not None and Quote.model_validate_json(raw) == make_quote()
    assert 0 < await redis_client.ttl(key) <= TTL_SECONDS


async def test_redis_rounds_a_fractional_ttl_up(redis_client: Redis) -> None:
    cache = RedisQuoteCache(redis_client, 0.2, prefix="test:")
    await cache.set("k", make_quote())
    assert await redis_client.ttl("test:k") == 1


async def test_redis_caches_with_other_prefixes_are_separate(redis_client: Redis) -> None:
    await RedisQuoteCache(redis_client, TTL_SECONDS, prefix="one:").set("k", make_quote())
    assert await RedisQuoteCache(redis_client, TTL_SECONDS, prefix="two:").get("k") is None


async def test_redis_treats_an_unreadable_entry_as_a_miss(redis_client: Redis) -> None:
    await redis_client.set(DEFAULT_QUOTE_KEY_PREFIX + "k", b'{"symbol": "AAPL"}')
    assert await RedisQuoteCache(redis_client, TTL_SECONDS).get("k") is None


async def test_an_unreachable_redis_raises_storage_unavailable() -> None:
    # Port 1 refuses at once; no retries, so the test does not wait out a backoff.
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    cache = RedisQuoteCache(client, TTL_SECONDS)
    try:
        with pytest.raises(StorageUnavailableError) as caught:
            await cache.get("k")
        assert caught.value.backend == "redis"
        with pytest.raises(StorageUnavailableError):
            await cache.set("k", make_quote())
    finally:
        await client.aclose()
