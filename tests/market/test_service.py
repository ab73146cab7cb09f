"""MarketData: lookups through the cache, with an honest cache_hit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import respx
from redis.asyncio import Redis

from fiml.core.errors import InvalidInputError, ProviderUnavailableError, SymbolNotFoundError
from fiml.market import (
    BINANCE_TICKER_URL,
    YAHOO_CHART_URL,
    MarketData,
    MemoryQuoteCache,
    RedisQuoteCache,
)


@pytest.fixture
async def live() -> AsyncIterator[MarketData]:
    async with MarketData.live(timeout=2) as market_data:
        yield market_data


@pytest.fixture
def yahoo_aapl(http_mock: respx.MockRouter, load_json: Callable[[str], Any]) -> respx.Route:
    return http_mock.get(YAHOO_CHART_URL + "AAPL").respond(
        200, json=load_json("yahoo_chart_aapl.json")
    )


@pytest.fixture
def binance_btc(http_mock: respx.MockRouter, load_json: Callable[[str], Any]) -> respx.Route:
    return http_mock.get(BINANCE_TICKER_URL, params={"symbol": "BTCUSDT"}).respond(
        200, json=load_json("binance_ticker_24hr_btcusdt.json")
    )


async def test_a_repeat_lookup_is_served_from_the_cache(
    live: MarketData, yahoo_aapl: respx.Route
) -> None:
    first = await live.search_symbol("AAPL")
    second = await live.search_symbol("AAPL")

    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert yahoo_aapl.call_count == 1
    assert second.quote == first.quote
    assert first.execution_time_ms >= 0 and second.execution_time_ms >= 0


async def test_another_symbol_is_a_miss(
    live: MarketData, http_mock: respx.MockRouter, yahoo_aapl: respx.Route
) -> None:
    msft = http_mock.get(YAHOO_CHART_URL + "MSFT").respond(404, json={"chart": {"error": None}})
    await live.search_symbol("AAPL")

    with pytest.raises(ProviderUnavailableError):
        await live.search_symbol("MSFT")

    assert msft.call_count == 1


async def test_spellings_of_one_symbol_share_an_entry(
    live: MarketData, yahoo_aapl: respx.Route
) -> None:
    await live.search_symbol("AAPL")
    assert (await live.search_symbol("  aapl ")).cache_hit is True
    assert (await live.search_symbol("AAPL", market="us")).cache_hit is False
    assert (await live.search_symbol("AAPL", market="US")).cache_hit is True
    assert yahoo_aapl.call_count == 2


async def test_spellings_of_one_pair_share_an_entry(
    live: MarketData, binance_btc: respx.Route
) -> None:
    results = [
        await live.search_coin("BTC"),
        await live.search_coin("btc/usdt"),
        await live.search_coin("BTCUSDT"),
        await live.search_coin("BTC", pair="USDT"),
    ]

    assert [result.cache_hit for result in results] == [False, True, True, True]
    assert binance_btc.call_count == 1
    assert results[0].quote.summary() == "BTC: 67,234.50 USDT (+1.22%)"


async def test_failures_are_not_cached(
    live: MarketData, http_mock: respx.MockRouter, load_json: Callable[[str], Any]
) -> None:
    route = http_mock.get(BINANCE_TICKER_URL).respond(
        400, json=load_json("binance_invalid_symbol.json")
    )

    for _ in range(2):
        with pytest.raises(SymbolNotFoundError):
            await live.search_coin("NOSUCHCOIN")

    assert route.call_count == 2


async def test_bad_input_is_rejected_before_the_cache_or_network(
    http_mock: respx.MockRouter,
) -> None:
    cache = MemoryQuoteCache(60)
    route = http_mock.route().respond(200, json={})
    async with MarketData.live(timeout=2) as live:
        live.cache = cache
        with pytest.raises(InvalidInputError) as symbol_error:
            await live.search_symbol("AA PL")
        with pytest.raises(InvalidInputError) as pair_error:
            await live.search_coin("BTC", pair="US/DT")

    assert symbol_error.value.field == "symbol"
    assert pair_error.value.field == "pair"
    assert not route.called
    assert len(cache) == 0


async def test_redis_cache_hits_are_shared_between_instances(
    redis_client: Redis, yahoo_aapl: respx.Route
) -> None:
    async with MarketData.live(redis_client, timeout=2) as first:
        assert (await first.search_symbol("AAPL")).cache_hit is False
    async with MarketData.live(redis_client, timeout=2) as second:
        assert (await second.search_symbol("AAPL")).cache_hit is True

    assert yahoo_aapl.call_count == 1
    assert await redis_client.ping()


async def test_synthetic_quotes_never_answer_live_lookups(
    redis_client: Redis, yahoo_aapl: respx.Route
) -> None:
    shared = RedisQuoteCache(redis_client, 60)
    offline = MarketData.offline(cache=shared)
    assert (await offline.search_symbol("AAPL")).quote.synthetic is True

    async with MarketData.live(timeout=2) as live:
        live.cache = shared
        result = await live.search_symbol("AAPL")

    assert result.cache_hit is False
    assert result.quote.synthetic is False
    assert yahoo_aapl.call_count == 1


async def test_offline_market_data_labels_every_result(http_mock: respx.MockRouter) -> None:
    route = http_mock.route().respond(200, json={})
    async with MarketData.offline() as offline:
        equity = await offline.search_symbol("AAPL")
        coin = await offline.search_coin("ETH", pair="BTC")
        again = await offline.search_symbol("AAPL")

    assert equity.quote.synthetic and coin.quote.synthetic
    assert equity.quote.summary().endswith("[synthetic]")
    assert (coin.quote.symbol, coin.quote.currency) == ("ETH", "BTC")
    assert (equity.cache_hit, again.cache_hit) == (False, True)
    assert not route.called


async def test_aclose_closes_both_providers() -> None:
    live = MarketData.live()
    await live.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await live.search_symbol("AAPL")
    with pytest.raises(RuntimeError, match="closed"):
        await live.search_coin("BTC")
