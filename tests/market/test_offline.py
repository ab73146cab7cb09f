"""OfflineProvider: deterministic, network-free, and always labelled synthetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fiml.core.errors import InvalidInputError
from fiml.market import OfflineProvider

FIXED_NOW = datetime(2024, 5, 17, 20, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED_NOW


async def test_quotes_are_pinned_across_runs_and_processes() -> None:
    # Pinned values: a per-process hash (Python's hash()) or a changed formula would move them.
    quote = await OfflineProvider("equity", clock=fixed_clock).get_quote("AAPL")

    assert (quote.price, quote.change, quote.change_percent) == (40.67, -0.38, -0.93)
    assert quote.volume == 15871335.0
    assert quote.as_of == FIXED_NOW


async def test_two_providers_agree_on_a_symbol() -> None:
    first = await OfflineProvider("crypto", clock=fixed_clock).get_quote("ETH")
    second = await OfflineProvider("crypto", clock=fixed_clock).get_quote("eth/usdt")
    assert first == second


async def test_different_symbols_get_different_quotes() -> None:
    provider = OfflineProvider("equity")
    prices = {(await provider.get_quote(symbol)).price for symbol in ("AAPL", "MSFT", "GOOGL")}
    assert len(prices) == 3


@pytest.mark.parametrize("asset_class", ["equity", "crypto"])
async def test_every_quote_is_labelled_synthetic(asset_class: str) -> None:
    provider = OfflineProvider("equity" if asset_class == "equity" else "crypto")

    quote = await provider.get_quote("ZZZZ")

    assert quote.synthetic is True
    assert quote.source == "offline"
    assert quote.asset_class == asset_class
    assert quote.summary().endswith(" [synthetic]")


async def test_crypto_quotes_are_priced_in_the_quote_asset() -> None:
    quote = await OfflineProvider("crypto").get_quote("ETH", market="BTC")
    assert (quote.symbol, quote.currency, quote.market) == ("ETH", "BTC", "ETHBTC")


async def test_change_matches_the_percent() -> None:
    quote = await OfflineProvider("equity").get_quote("MSFT")
    assert quote.change is not None and quote.change_percent is not None
    previous = quote.price - quote.change
    assert quote.change_percent == pytest.approx(quote.change / previous * 100, abs=0.006)


async def test_malformed_symbols_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        await OfflineProvider("equity").get_quote("not a symbol")
