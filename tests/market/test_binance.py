"""BinanceProvider against Binance's 24hr ticker responses (fixtures in the real format)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from fiml.core.errors import InvalidInputError, ProviderUnavailableError, SymbolNotFoundError
from fiml.market import BINANCE_TICKER_URL, BinanceProvider


@pytest.fixture
async def binance() -> AsyncIterator[BinanceProvider]:
    provider = BinanceProvider(timeout=2.5)
    yield provider
    await provider.aclose()


@pytest.fixture
def btc_ticker(load_json: Callable[[str], Any]) -> dict[str, Any]:
    ticker: dict[str, Any] = load_json("binance_ticker_24hr_btcusdt.json")
    return ticker


async def test_parses_the_ticker_into_a_quote(
    binance: BinanceProvider, http_mock: respx.MockRouter, btc_ticker: dict[str, Any]
) -> None:
    http_mock.get(BINANCE_TICKER_URL, params={"symbol": "BTCUSDT"}).respond(200, json=btc_ticker)

    quote = await binance.get_quote("BTC", market="USDT")

    assert quote.symbol == "BTC"
    assert quote.name is None
    assert quote.asset_class == "crypto"
    assert quote.price == 67234.5
    assert quote.currency == "USDT"
    assert quote.change == 812.35
    assert quote.change_percent == 1.223
    assert quote.volume == 21834.56789
    assert quote.market == "BTCUSDT"
    assert quote.as_of == datetime(2024, 5, 17, 20, 0, tzinfo=UTC)
    assert quote.source == "binance"
    assert quote.synthetic is False
    assert quote.summary() == "BTC: 67,234.50 USDT (+1.22%)"


@pytest.mark.parametrize(
    ("symbol", "market"), [("btc", None), ("BTC/USDT", None), ("BTCUSDT", None), ("BTC", "usdt")]
)
async def test_every_spelling_asks_for_the_same_pair(
    binance: BinanceProvider,
    http_mock: respx.MockRouter,
    btc_ticker: dict[str, Any],
    symbol: str,
    market: str | None,
) -> None:
    route = http_mock.get(BINANCE_TICKER_URL).respond(200, json=btc_ticker)

    quote = await binance.get_quote(symbol, market=market)

    assert route.calls.last.request.url.params["symbol"] == "BTCUSDT"
    assert (quote.symbol, quote.currency) == ("BTC", "USDT")


async def test_unknown_symbol_raises_symbol_not_found(
    binance: BinanceProvider, http_mock: respx.MockRouter, load_json: Callable[[str], Any]
) -> None:
    http_mock.get(BINANCE_TICKER_URL).respond(400, json=load_json("binance_invalid_symbol.json"))

    with pytest.raises(SymbolNotFoundError) as caught:
        await binance.get_quote("NOSUCHCOIN")

    assert caught.value.symbol == "NOSUCHCOIN/USDT"
    assert caught.value.provider == "binance"


async def test_other_binance_errors_raise_provider_unavailable(
    binance: BinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(BINANCE_TICKER_URL).respond(
        400, json={"code": -1003, "msg": "Too much request weight used."}
    )

    with pytest.raises(ProviderUnavailableError, match="-1003: Too much request weight"):
        await binance.get_quote("BTC")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "HTTP 500 (server error)"),
        (429, "HTTP 429 (rate limited)"),
        (451, "HTTP 451 (refused from this location)"),
        (400, "HTTP 400 (Bad Request)"),
    ],
)
async def test_error_statuses_raise_provider_unavailable(
    binance: BinanceProvider, http_mock: respx.MockRouter, status: int, reason: str
) -> None:
    http_mock.get(BINANCE_TICKER_URL).respond(status, text="<html>error</html>")

    with pytest.raises(ProviderUnavailableError) as caught:
        await binance.get_quote("BTC")

    assert caught.value.provider == "binance"
    assert reason in caught.value.reason


async def test_a_timeout_raises_provider_unavailable(
    binance: BinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(BINANCE_TICKER_URL).mock(side_effect=httpx.ConnectTimeout("timed out"))

    with pytest.raises(ProviderUnavailableError) as caught:
        await binance.get_quote("BTC")

    assert caught.value.reason == "request to api.binance.com timed out after 2.5 s connecting"


async def test_a_read_timeout_says_so(
    binance: BinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(BINANCE_TICKER_URL).mock(side_effect=httpx.ReadTimeout("timed out"))

    with pytest.raises(ProviderUnavailableError, match="waiting for the response"):
        await binance.get_quote("BTC")


async def test_a_body_that_is_not_json_raises_provider_unavailable(
    binance: BinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(BINANCE_TICKER_URL).respond(200, text='{"symbol":"BTCUSDT","lastPrice":')

    with pytest.raises(ProviderUnavailableError, match="not valid JSON"):
        await binance.get_quote("BTC")


@pytest.mark.parametrize(("field", "value"), [("lastPrice", "not-a-number"), ("closeTime", None)])
async def test_unusable_ticker_values_raise_provider_unavailable(
    binance: BinanceProvider,
    http_mock: respx.MockRouter,
    btc_ticker: dict[str, Any],
    field: str,
    value: object,
) -> None:
    btc_ticker[field] = value
    http_mock.get(BINANCE_TICKER_URL).respond(200, json=btc_ticker)

    with pytest.raises(ProviderUnavailableError, match="unexpected ticker response"):
        await binance.get_quote("BTC")


@pytest.mark.parametrize(
    ("symbol", "market"), [("BT C", None), ("BTC.X", None), ("BTC/ETH", "USDT"), ("BTC", "US-D")]
)
async def test_bad_input_is_rejected_before_any_request(
    binance: BinanceProvider, http_mock: respx.MockRouter, symbol: str, market: str | None
) -> None:
    route = http_mock.route(host="api.binance.com").respond(200, json={})

    with pytest.raises(InvalidInputError):
        await binance.get_quote(symbol, market=market)

    assert not route.called
