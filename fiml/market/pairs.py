"""Crypto trading pairs: how ``BTC``, ``BTC/USDT``, ``BTC-USDT`` and ``BTCUSDT`` are read."""

from __future__ import annotations

import re
from typing import NamedTuple

from fiml.core.errors import InvalidInputError
from fiml.market.base import normalize_market, normalize_symbol

__all__ = ["DEFAULT_QUOTE_ASSET", "CryptoPair", "parse_crypto_pair"]

DEFAULT_QUOTE_ASSET = "USDT"
"""The quote asset used when a coin is given alone (``BTC`` means ``BTC/USDT``)."""

# Only quote assets no listed coin name plausibly ends with, so "BTCUSDT" splits but
# "WBTC" is not read as W/BTC; write "ETH/BTC" for a coin-quoted pair.
_CONCATENATED_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "TRY", "BRL")
_MIN_BASE_LENGTH = 2
_ASSET = re.compile(r"[A-Z0-9]+")


class CryptoPair(NamedTuple):
    """A base asset priced in a quote asset, e.g. ``CryptoPair("BTC", "USDT")``."""

    base: str
    quote: str

    @property
    def ticker(self) -> str:
        """The exchange ticker, base and quote joined: ``BTCUSDT``."""
        return f"{self.base}{self.quote}"


def parse_crypto_pair(
    symbol: object, market: object = None, *, market_field: str = "market"
) -> CryptoPair:
    """Read a coin and an optional quote asset into a :class:`CryptoPair`.

    ``("BTC", None)``, ``("BTC", "USDT")``, ``("btc/usdt", None)``, ``("BTC-USDT", None)`` and
    ``("BTCUSDT", None)`` all give ``BTC/USDT``. Raises
    :class:`~fiml.core.errors.InvalidInputError` naming ``symbol`` or ``market_field``.
    """
    text = normalize_symbol(symbol)
    quote = None if market is None else normalize_market(market, field=market_field)
    base, written_quote = _split(text, quote)
    if quote is not None and written_quote not in (None, quote):
        raise InvalidInputError(market_field, market, f"conflicts with the pair in {text!r}")
    if written_quote is None:
        written_quote = quote or DEFAULT_QUOTE_ASSET
    pair = CryptoPair(base, written_quote)
    if not _ASSET.fullmatch(pair.base) or not _ASSET.fullmatch(pair.quote):
        raise InvalidInputError(
            "symbol", symbol, "a coin is letters and digits, e.g. BTC, BTC/USDT or BTCUSDT"
        )
    if pair.base == pair.quote:
        raise InvalidInputError("symbol", symbol, f"cannot price {pair.base} in itself")
    return pair


def _split(text: str, quote: str | None) -> tuple[str, str | None]:
    for separator in ("/", "-"):
        if separator in text:
            base, _, written_quote = text.partition(separator)
            return base, written_quote
    suffixes = (quote,) if quote is not None else _CONCATENATED_QUOTES
    for suffix in suffixes:
        if text.endswith(suffix) and len(text) - len(suffix) >= _MIN_BASE_LENGTH:
            return text[: -len(suffix)], suffix
    return text, None
