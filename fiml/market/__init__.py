"""Market data: quote providers (equity, crypto), a quote cache, and the service joining them.

``MarketData.live()`` quotes equities from Yahoo Finance and crypto from Binance, keylessly;
``MarketData.offline()`` gives deterministic quotes labelled synthetic, with no network. Every
result says whether it came from the cache.
"""

from fiml.market.base import (
    DEFAULT_TIMEOUT_SECONDS,
    AssetClass,
    Quote,
    QuoteProvider,
    normalize_market,
    normalize_symbol,
)
from fiml.market.binance import BINANCE_TICKER_URL, BinanceProvider
from fiml.market.cache import (
    DEFAULT_QUOTE_KEY_PREFIX,
    MemoryQuoteCache,
    QuoteCache,
    RedisQuoteCache,
    quote_key_prefix,
)
from fiml.market.offline import OfflineProvider
from fiml.market.pairs import DEFAULT_QUOTE_ASSET, CryptoPair, parse_crypto_pair
from fiml.market.service import DEFAULT_CACHE_TTL_SECONDS, MarketData, QuoteResult
from fiml.market.yahoo import YAHOO_CHART_URL, YahooFinanceProvider

__all__ = [
    "BINANCE_TICKER_URL",
    "DEFAULT_CACHE_TTL_SECONDS",
    "DEFAULT_QUOTE_ASSET",
    "DEFAULT_QUOTE_KEY_PREFIX",
    "DEFAULT_TIMEOUT_SECONDS",
    "YAHOO_CHART_URL",
    "AssetClass",
    "BinanceProvider",
    "CryptoPair",
    "MarketData",
    "MemoryQuoteCache",
    "OfflineProvider",
    "Quote",
    "QuoteCache",
    "QuoteProvider",
    "QuoteResult",
    "RedisQuoteCache",
    "YahooFinanceProvider",
    "normalize_market",
    "normalize_symbol",
    "parse_crypto_pair",
    "quote_key_prefix",
]
