"""Crypto quotes from Binance's keyless 24-hour ticker endpoint."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from fiml.core.errors import ProviderUnavailableError, SymbolNotFoundError
from fiml.market._http import build_client, decode_json, fetch, status_reason, unusable_body
from fiml.market.base import DEFAULT_TIMEOUT_SECONDS, AssetClass, Quote
from fiml.market.pairs import CryptoPair, parse_crypto_pair

__all__ = ["BINANCE_TICKER_URL", "BinanceProvider"]

BINANCE_TICKER_URL = "https://api.binance.com/api/v3/ticker/24hr"
"""The 24-hour rolling-window ticker endpoint."""

_INVALID_SYMBOL = -1121


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Ticker(_Wire):
    """The fields of a ``ticker/24hr`` answer we use; Binance sends numbers as strings."""

    symbol: str
    last_price: float
    price_change: float
    price_change_percent: float
    volume: float
    close_time: int


class _Error(_Wire):
    code: int
    msg: str


class BinanceProvider:
    """Keyless crypto quotes from Binance spot (``api.binance.com``).

    ``get_quote("BTC", market="USDT")``, ``get_quote("BTC/USDT")`` and ``get_quote("BTCUSDT")``
    all ask for the ``BTCUSDT`` pair; the quote asset defaults to USDT. Change and change
    percent are over Binance's rolling 24 hours; volume is in the base asset. Pass ``client``
    to share a connection pool; the provider then leaves it open on ``aclose``.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        client: httpx.AsyncClient | None = None,
        ticker_url: str = BINANCE_TICKER_URL,
    ) -> None:
        self.name = "binance"
        self.asset_class: AssetClass = "crypto"
        self._owns_client = client is None
        self._client = (
            client
            if client is not None
            else build_client(timeout=timeout, headers={"Accept": "application/json"})
        )
        self._ticker_url = ticker_url

    async def get_quote(self, symbol: str, *, market: str | None = None) -> Quote:
        """The latest 24-hour ticker for the pair; see :class:`QuoteProvider`."""
        pair = parse_crypto_pair(symbol, market)
        response = await fetch(
            self._client, self._ticker_url, provider=self.name, params={"symbol": pair.ticker}
        )
        if response.status_code == httpx.codes.BAD_REQUEST:
            self._raise_for_error_body(pair, response)
        if response.status_code != httpx.codes.OK:
            raise ProviderUnavailableError(self.name, status_reason(response))
        return self._to_quote(pair, decode_json(response, provider=self.name))

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            await self._client.aclose()

    def _raise_for_error_body(self, pair: CryptoPair, response: httpx.Response) -> None:
        try:
            error = _Error.model_validate_json(response.content)
        except ValidationError:
            return
        if error.code == _INVALID_SYMBOL:
            raise SymbolNotFoundError(f"{pair.base}/{pair.quote}", self.name)
        raise ProviderUnavailableError(self.name, f"error {error.code}: {error.msg}")

    def _to_quote(self, pair: CryptoPair, payload: object) -> Quote:
        try:
            ticker = _Ticker.model_validate(payload)
            return Quote(
                symbol=pair.base,
                asset_class="crypto",
                price=ticker.last_price,
                currency=pair.quote,
                change=ticker.price_change,
                change_percent=ticker.price_change_percent,
                volume=ticker.volume,
                market=ticker.symbol,
                as_of=datetime.fromtimestamp(ticker.close_time / 1000, UTC),
                source=self.name,
            )
        except ValidationError as exc:
            raise unusable_body(self.name, "unexpected ticker response", exc) from exc
