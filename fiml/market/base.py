"""The quote model, the provider contract, and symbol validation shared by every provider."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from fiml.core.errors import InvalidInputError

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "AssetClass",
    "Quote",
    "QuoteProvider",
    "normalize_market",
    "normalize_symbol",
]

DEFAULT_TIMEOUT_SECONDS = 10.0
"""How long a live provider waits to connect, and then for each read, by default."""

AssetClass = Literal["equity", "crypto"]
"""The kinds of instrument FIML quotes."""

_SYMBOL = re.compile(r"[A-Z0-9.^=/-]{1,20}")
_MARKET = re.compile(r"[A-Z0-9]{1,10}")
_CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£"}


class Quote(BaseModel):
    """One price observation for one instrument, as a provider reported it."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    name: str | None = None
    asset_class: AssetClass
    price: float = Field(ge=0, allow_inf_nan=False)
    currency: str
    change: float | None = Field(default=None, allow_inf_nan=False)
    change_percent: float | None = Field(default=None, allow_inf_nan=False)
    volume: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    market: str | None = None
    as_of: AwareDatetime
    source: str
    synthetic: bool = False

    @field_validator("as_of")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def summary(self) -> str:
        """One line for people and logs, e.g. ``AAPL: $175.43 (+2.30%)``."""
        text = f"{self.symbol}: {_format_price(self.price, self.currency)}"
        if self.change_percent is not None:
            text += f" ({self.change_percent:+.2f}%)"
        if self.synthetic:
            text += " [synthetic]"
        return text


def _format_price(price: float, currency: str) -> str:
    # Sub-unit crypto prices (0.00001234) would read as 0.00 with two decimals.
    decimals = 2 if price >= 1 or price == 0 else min(10, 3 - math.floor(math.log10(price)))
    amount = f"{price:,.{decimals}f}"
    sign = _CURRENCY_SIGNS.get(currency.upper())
    return f"{sign}{amount}" if sign else f"{amount} {currency}"


class QuoteProvider(Protocol):
    """A source of quotes for one asset class."""

    name: str
    asset_class: AssetClass

    async def get_quote(self, symbol: str, *, market: str | None = None) -> Quote:
        """Return the latest quote for ``symbol``.

        Raises :class:`~fiml.core.errors.InvalidInputError` for a malformed symbol (before any
        request), :class:`~fiml.core.errors.SymbolNotFoundError` when the provider does not know
        it, and :class:`~fiml.core.errors.ProviderUnavailableError` when no usable answer came.
        """
        ...

    async def aclose(self) -> None:
        """Release the provider's connections."""
        ...


def normalize_symbol(value: object) -> str:
    """Strip and uppercase a ticker; reject anything but 1-20 of ``A-Z 0-9 . ^ = - /``."""
    if not isinstance(value, str):
        raise InvalidInputError("symbol", value, "must be a string")
    symbol = value.strip().upper()
    if not _SYMBOL.fullmatch(symbol):
        raise InvalidInputError(
            "symbol", value, "must be 1-20 characters of letters, digits and . ^ = - /"
        )
    return symbol


def normalize_market(value: object, *, field: str = "market") -> str:
    """Strip and uppercase a market (an exchange suffix or a quote asset): 1-10 letters/digits."""
    if not isinstance(value, str):
        raise InvalidInputError(field, value, "must be a string")
    market = value.strip().upper()
    if not _MARKET.fullmatch(market):
        raise InvalidInputError(field, value, "must be 1-10 letters or digits")
    return market
