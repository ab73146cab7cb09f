"""``MarketData``: quotes through a cache, each result saying honestly where it came from."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field

from fiml.core.config import DEFAULT_REDIS_KEY_PREFIX, DEFAULT_REDIS_TIMEOUT_SECONDS
from fiml.market.base import (
    DEFAULT_TIMEOUT_SECONDS,
    Quote,
    QuoteProvider,
    normalize_market,
    normalize_symbol,
)
from fiml.market.binance import BinanceProvider
from fiml.market.cache import MemoryQuoteCache, QuoteCache, RedisQuoteCache, quote_key_prefix
from fiml.market.offline import OfflineProvider
from fiml.market.pairs import parse_crypto_pair
from fiml.market.yahoo import YahooFinanceProvider

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["DEFAULT_CACHE_TTL_SECONDS", "MarketData", "QuoteResult"]

DEFAULT_CACHE_TTL_SECONDS = 60.0
"""How long the factories keep a quote before asking the provider again."""


class QuoteResult(BaseModel):
    """A quote, whether it was served from the cache, and how long the lookup took."""

    model_config = ConfigDict(frozen=True)

    quote: Quote
    cache_hit: bool
    execution_time_ms: float = Field(ge=0)


class MarketData:
    """Looks quotes up through a cache: equities from one provider, crypto from another.

    ``cache_hit`` is ``True`` only when the quote was served from the cache. Two identical
    lookups that both miss at the same time may both ask the provider. Errors are never
    cached. ``aclose`` closes both providers; a Redis client passed in stays the caller's.
    """

    def __init__(self, equity: QuoteProvider, crypto: QuoteProvider, cache: QuoteCache) -> None:
        self.equity = equity
        self.crypto = crypto
        self.cache = cache

    @classmethod
    def offline(
        cls,
        *,
        cache: QuoteCache | None = None,
        cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
    ) -> MarketData:
        """Synthetic quotes for demos and tests, no network; in-memory cache by default."""
        return cls(
            OfflineProvider("equity"),
            OfflineProvider("crypto"),
            cache if cache is not None else MemoryQuoteCache(cache_ttl_seconds),
        )

    @classmethod
    def live(
        cls,
        redis_client: RedisClient | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
        redis_key_prefix: str = DEFAULT_REDIS_KEY_PREFIX,
        redis_timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
    ) -> MarketData:
        """Yahoo Finance for equities, Binance for crypto; cached in Redis if a client is given
        (under ``redis_key_prefix``, each call bounded by ``redis_timeout_seconds``: pass the
        settings of the same names)."""
        cache: QuoteCache = (
            MemoryQuoteCache(cache_ttl_seconds)
            if redis_client is None
            else RedisQuoteCache(
                redis_client,
                cache_ttl_seconds,
                quote_key_prefix(redis_key_prefix),
                timeout_seconds=redis_timeout_seconds,
            )
        )
        return cls(YahooFinanceProvider(timeout=timeout), BinanceProvider(timeout=timeout), cache)

    async def search_symbol(self, symbol: str, market: str | None = None) -> QuoteResult:
        """The latest quote for an equity ``symbol``, optionally on ``market``."""
        ticker = normalize_symbol(symbol)
        venue = None if market is None else normalize_market(market)
        key = f"equity:{self.equity.name}:{ticker}:{venue or ''}"
        return await self._lookup(key, lambda: self.equity.get_quote(ticker, market=venue))

    async def search_coin(self, symbol: str, pair: str | None = None) -> QuoteResult:
        """The latest quote for a coin, priced in ``pair`` (a quote asset, USDT by default).

        ``symbol`` may also carry the pair: ``BTC/USDT``, ``BTC-USDT`` or ``BTCUSDT``.
        """
        parsed = parse_crypto_pair(symbol, pair, market_field="pair")
        key = f"crypto:{self.crypto.name}:{parsed.base}/{parsed.quote}"
        return await self._lookup(
            key, lambda: self.crypto.get_quote(parsed.base, market=parsed.quote)
        )

    async def aclose(self) -> None:
        """Close both providers."""
        try:
            await self.equity.aclose()
        finally:
            await self.crypto.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _lookup(self, key: str, fetch: Callable[[], Awaitable[Quote]]) -> QuoteResult:
        started = time.perf_counter()
        quote = await self.cache.get(key)
        cache_hit = quote is not None
        if quote is None:
            quote = await fetch()
            await self.cache.set(key, quote)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return QuoteResult(quote=quote, cache_hit=cache_hit, execution_time_ms=elapsed_ms)
