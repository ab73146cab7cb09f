"""Synthetic quotes for demos and tests, labelled as such, with no network at all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from fiml.market.base import AssetClass, Quote, normalize_market, normalize_symbol
from fiml.market.pairs import parse_crypto_pair

__all__ = ["OfflineProvider"]

# Log-uniform price ranges, as (lowest price, decades spanned).
_PRICE_RANGES: dict[AssetClass, tuple[float, float]] = {
    "equity": (5.0, 2.0),
    "crypto": (0.01, 6.0),
}
_MAX_DAILY_MOVE_PERCENT = 8.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OfflineProvider:
    """Deterministic synthetic quotes: the same symbol gives the same numbers in every run.

    Every well-formed symbol is known. Each quote has ``synthetic=True`` and source
    ``"offline"``, and its summary says ``[synthetic]``; ``as_of`` is the time of the call.
    """

    def __init__(self, asset_class: AssetClass, *, clock: Callable[[], datetime] = _utc_now):
        self.name = "offline"
        self.asset_class: AssetClass = asset_class
        self._clock = clock

    async def get_quote(self, symbol: str, *, market: str | None = None) -> Quote:
        """A synthetic quote for ``symbol``; see :class:`QuoteProvider`."""
        if self.asset_class == "crypto":
            pair = parse_crypto_pair(symbol, market)
            return self._quote(pair.base, currency=pair.quote, market=pair.ticker)
        ticker = normalize_symbol(symbol)
        venue = None if market is None else normalize_market(market)
        return self._quote(ticker, currency="USD", market=venue)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _quote(self, symbol: str, *, currency: str, market: str | None) -> Quote:
        digest = hashlib.sha256(f"{self.asset_class}|{symbol}|{currency}".encode()).digest()
        price_draw, move_draw, volume_draw = (
            int.from_bytes(digest[i : i + 8], "big") / 2**64 for i in (0, 8, 16)
        )
        lowest, decades = _PRICE_RANGES[self.asset_class]
        previous_close = lowest * 10 ** (price_draw * decades)
        decimals = 2 if previous_close >= 1 else 8
        previous_close = round(previous_close, decimals)
        move = (move_draw * 2 - 1) * _MAX_DAILY_MOVE_PERCENT / 100
        price = round(previous_close * (1 + move), decimals)
        change = round(price - previous_close, decimals)
        return Quote(
            symbol=symbol,
            asset_class=self.asset_class,
            price=price,
            currency=currency,
            change=change,
            change_percent=round(change / previous_close * 100, 2),
            volume=float(round(10 ** (4 + volume_draw * 4))),
            market=market,
            as_of=self._clock(),
            source=self.name,
            synthetic=True,
        )
