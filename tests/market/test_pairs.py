"""How a coin and an optional quote asset are read into a trading pair."""

from __future__ import annotations

import pytest

from fiml.core.errors import InvalidInputError
from fiml.market import CryptoPair, parse_crypto_pair


@pytest.mark.parametrize(
    ("symbol", "market"),
    [
        ("BTC", None),
        ("btc", "usdt"),
        ("BTC/USDT", None),
        ("BTC-USDT", None),
        ("BTCUSDT", None),
        ("BTCUSDT", "USDT"),
        ("BTC/USDT", "USDT"),
    ],
)
def test_every_spelling_of_btc_usdt_gives_one_pair(symbol: str, market: str | None) -> None:
    pair = parse_crypto_pair(symbol, market)
    assert pair == CryptoPair("BTC", "USDT")
    assert pair.ticker == "BTCUSDT"


def test_an_explicit_quote_asset_is_used() -> None:
    assert parse_crypto_pair("ETH", "BTC") == CryptoPair("ETH", "BTC")
    assert parse_crypto_pair("ETH/BTC") == CryptoPair("ETH", "BTC")


def test_coins_ending_like_a_coin_quote_are_not_split() -> None:
    assert parse_crypto_pair("WBTC") == CryptoPair("WBTC", "USDT")
    assert parse_crypto_pair("WBTC", "BTC") == CryptoPair("WBTC", "BTC")


def test_stablecoin_suffixes_split_concatenated_pairs() -> None:
    assert parse_crypto_pair("SOLUSDC") == CryptoPair("SOL", "USDC")
    assert parse_crypto_pair("ETHEUR") == CryptoPair("ETH", "EUR")


def test_a_conflicting_market_names_the_market_field() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_crypto_pair("BTC/ETH", "USDT", market_field="pair")
    assert caught.value.field == "pair"


@pytest.mark.parametrize("symbol", ["BTC/", "/USDT", "BT.C", "BTC/US/DT", "^BTC", "USDT"])
def test_malformed_pairs_are_rejected(symbol: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_crypto_pair(symbol)
    assert caught.value.field == "symbol"
