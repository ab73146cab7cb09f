"""Equity quotes from Yahoo Finance's keyless chart endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote as quote_path

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from fiml.core.errors import ProviderUnavailableError, SymbolNotFoundError
from fiml.market._http import build_client, decode_json, fetch, status_reason, unusable_body
from fiml.market.base import (
    DEFAULT_TIMEOUT_SECONDS,
    AssetClass,
    Quote,
    normalize_market,
    normalize_symbol,
)

__all__ = ["YAHOO_CHART_URL", "YahooFinanceProvider"]

YAHOO_CHART_URL = "https://query1.finance.yahoo.com/v8/finance/chart/"
"""The chart endpoint; the symbol is appended to the path."""

# Yahoo answers scripted user agents with 429s; it serves the chart API to browsers.
_BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
_US_MARKETS = frozenset({"US"})


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Meta(_Wire):
    symbol: str
    currency: str
    regular_market_price: float
    regular_market_time: int
    regular_market_volume: float | None = None
    previous_close: float | None = None
    chart_previous_close: float | None = None
    exchange_name: str | None = None
    full_exchange_name: str | None = None
    long_name: str | None = None
    short_name: str | None = None
    gmtoffset: int = 0


class _Bars(_Wire):
    close: list[float | None] = []


class _Indicators(_Wire):
    quote: list[_Bars] = []


class _Result(_Wire):
    meta: _Meta
    timestamp: list[int] | None = None
    indicators: _Indicators = Field(default_factory=_Indicators)


class _Error(_Wire):
    code: str
    description: str | None = None


class _Chart(_Wire):
    result: list[_Result] | None = None
    error: _Error | None = None


class _Envelope(_Wire):
    chart: _Chart


class YahooFinanceProvider:
    """Keyless equity quotes from Yahoo Finance (``query1.finance.yahoo.com``).

    ``market`` is a Yahoo exchange suffix such as ``"L"`` (London) or ``"TO"`` (Toronto), so
    ``get_quote("VOD", market="L")`` asks for ``VOD.L``; ``None`` or ``"US"`` means a US listing.
    Pass ``client`` to share a connection pool; the provider then leaves it open on ``aclose``.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        client: httpx.AsyncClient | None = None,
        chart_url: str = YAHOO_CHART_URL,
    ) -> None:
        self.name = "yahoo"
        self.asset_class: AssetClass = "equity"
        self._owns_client = client is None
        self._client = (
            client
            if client is not None
            else build_client(
                timeout=timeout,
                headers={"User-Agent": _BROWSER_USER_AGENT, "Accept": "application/json"},
            )
        )
        self._chart_url = chart_url

    async def get_quote(self, symbol: str, *, market: str | None = None) -> Quote:
        """The latest regular-session quote for ``symbol``; see :class:`QuoteProvider`."""
        ticker = _yahoo_ticker(normalize_symbol(symbol), market)
        response = await fetch(
            self._client,
            self._chart_url + quote_path(ticker, safe=""),
            provider=self.name,
            params={"interval": "1d", "range": "5d"},
        )
        if response.status_code == httpx.codes.NOT_FOUND and _says_not_found(response):
            raise SymbolNotFoundError(ticker, self.name)
        if response.status_code != httpx.codes.OK:
            raise ProviderUnavailableError(self.name, status_reason(response))
        result = self._parse_result(ticker, decode_json(response, provider=self.name))
        return self._to_quote(result)

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            await self._client.aclose()

    def _parse_result(self, ticker: str, payload: object) -> _Result:
        try:
            chart = _Envelope.model_validate(payload).chart
        except ValidationError as exc:
            raise unusable_body(self.name, "unexpected chart response", exc) from exc
        if chart.error is not None and chart.error.code == "Not Found":
            raise SymbolNotFoundError(ticker, self.name)
        if chart.error is not None or not chart.result:
            detail = chart.error.description if chart.error else "no result"
            raise ProviderUnavailableError(self.name, f"chart response had no data: {detail}")
        return chart.result[0]

    def _to_quote(self, result: _Result) -> Quote:
        meta = result.meta
        previous = _previous_close(result)
        change = None if previous is None else meta.regular_market_price - previous
        try:
            return Quote(
                symbol=meta.symbol,
                name=meta.long_name or meta.short_name,
                asset_class="equity",
                price=meta.regular_market_price,
                currency=meta.currency,
                change=change,
                change_percent=None if change is None or not previous else change / previous * 100,
                volume=meta.regular_market_volume,
                market=meta.full_exchange_name or meta.exchange_name,
                as_of=datetime.fromtimestamp(meta.regular_market_time, UTC),
                source=self.name,
            )
        except ValidationError as exc:
            raise unusable_body(self.name, "unusable quote values", exc) from exc


def _yahoo_ticker(symbol: str, market: str | None) -> str:
    if market is None:
        return symbol
    suffix = normalize_market(market)
    if suffix in _US_MARKETS or symbol.endswith(f".{suffix}"):
        return symbol
    return f"{symbol}.{suffix}"


def _says_not_found(response: httpx.Response) -> bool:
    try:
        error = _Envelope.model_validate_json(response.content).chart.error
    except ValidationError:
        return False
    return error is not None and error.code == "Not Found"


def _previous_close(result: _Result) -> float | None:
    """The last close before the trading day of ``regularMarketTime``.

    ``previousClose`` is authoritative when Yahoo sends it. Otherwise the daily bars are read,
    with ``chartPreviousClose`` as the close just before the first bar (it is the close before
    the whole 5-day range, so it is never the previous day's close unless only one bar remains).
    """
    meta = result.meta
    if meta.previous_close is not None:
        return meta.previous_close
    offset = timedelta(seconds=meta.gmtoffset)
    today = (datetime.fromtimestamp(meta.regular_market_time, UTC) + offset).date()
    closes = result.indicators.quote[0].close if result.indicators.quote else []
    previous = meta.chart_previous_close
    for stamp, close in zip(result.timestamp or [], closes, strict=False):
        if (datetime.fromtimestamp(stamp, UTC) + offset).date() >= today:
            break
        if close is not None:
            previous = close
    return previous
