"""The Quote model, its summary line, and symbol validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from fiml.core.errors import InvalidInputError
from fiml.market import Quote, normalize_market, normalize_symbol

AS_OF = datetime(2024, 5, 17, 20, 0, tzinfo=UTC)


def make_quote(**overrides: Any) -> Quote:
    fields: dict[str, Any] = {
        "symbol": "AAPL",
        "asset_class": "equity",
        "price": 175.43,
        "currency": "USD",
        "change": 3.95,
        "change_percent": 2.3034,
        "as_of": AS_OF,
        "source": "yahoo",
    }
    return Quote(**(fields | overrides))


def test_summary_shows_price_and_signed_percent() -> None:
    assert make_quote().summary() == "AAPL: $175.43 (+2.30%)"


def test_summary_shows_a_fall_with_a_minus_sign() -> None:
    assert make_quote(change_percent=-1.5).summary() == "AAPL: $175.43 (-1.50%)"


def test_summary_omits_the_change_when_unknown() -> None:
    assert make_quote(change=None, change_percent=None).summary() == "AAPL: $175.43"


def test_summary_names_currencies_without_a_sign() -> None:
    quote = make_quote(symbol="BTC", asset_class="crypto", price=67234.5, currency="USDT")
    assert quote.summary() == "BTC: 67,234.50 USDT (+2.30%)"


def test_summary_keeps_significant_digits_of_tiny_prices() -> None:
    quote = make_quote(symbol="SHIB", price=0.00002345, currency="USDT", change_percent=None)
    assert quote.summary() == "SHIB: 0.00002345 USDT"


def test_synthetic_quotes_say_so_in_the_summary() -> None:
    quote = make_quote(synthetic=True, source="offline")
    assert quote.summary() == "AAPL: $175.43 (+2.30%) [synthetic]"


def test_real_quotes_are_not_synthetic_by_default() -> None:
    assert make_quote().synthetic is False


def test_as_of_is_converted_to_utc() -> None:
    new_york = timezone(timedelta(hours=-4))
    quote = make_quote(as_of=datetime(2024, 5, 17, 16, 0, tzinfo=new_york))
    assert quote.as_of == AS_OF
    assert quote.as_of.utcoffset() == timedelta(0)


def test_naive_as_of_is_rejected() -> None:
    with pytest.raises(ValidationError):
        make_quote(as_of=datetime(2024, 5, 17, 20, 0))


@pytest.mark.parametrize("price", [-1.0, float("nan"), float("inf")])
def test_impossible_prices_are_rejected(price: float) -> None:
    with pytest.raises(ValidationError):
        make_quote(price=price)


def test_quote_survives_a_json_round_trip() -> None:
    quote = make_quote(volume=1.0, market="NasdaqGS", name="Apple Inc.")
    assert Quote.model_validate_json(quote.model_dump_json()) == quote


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AAPL", "AAPL"),
        ("  aapl ", "AAPL"),
        ("brk-b", "BRK-B"),
        ("^GSPC", "^GSPC"),
        ("EURUSD=X", "EURUSD=X"),
        ("VOD.L", "VOD.L"),
        ("btc/usdt", "BTC/USDT"),
        ("A", "A"),
        ("A" * 20, "A" * 20),
    ],
)
def test_normalize_symbol_accepts_tickers(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "A" * 21, "AA PL", "AAPL;DROP", "$AAPL", "ÄPPL", "a\nb", None, 42]
)
def test_normalize_symbol_rejects_anything_else(raw: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalize_symbol(raw)
    assert caught.value.field == "symbol"
    assert caught.value.value == raw


def test_normalize_market_uppercases_and_names_its_field() -> None:
    assert normalize_market(" usdt ") == "USDT"
    with pytest.raises(InvalidInputError) as caught:
        normalize_market("US/D", field="pair")
    assert caught.value.field == "pair"
