"""YahooFinanceProvider against Yahoo's chart responses (fixtures in the real format)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from fiml.core.errors import InvalidInputError, ProviderUnavailableError, SymbolNotFoundError
from fiml.market import YAHOO_CHART_URL, YahooFinanceProvider

AAPL_URL = YAHOO_CHART_URL + "AAPL"


@pytest.fixture
async def yahoo() -> AsyncIterator[YahooFinanceProvider]:
    provider = YahooFinanceProvider(timeout=3)
    yield provider
    await provider.aclose()


@pytest.fixture
def aapl_chart(load_json: Callable[[str], Any]) -> dict[str, Any]:
    chart: dict[str, Any] = load_json("yahoo_chart_aapl.json")
    return chart


async def test_parses_the_chart_meta_into_a_quote(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    quote = await yahoo.get_quote("aapl")

    assert quote.symbol == "AAPL"
    assert quote.name == "Apple Inc."
    assert quote.asset_class == "equity"
    assert quote.price == 175.43
    assert quote.currency == "USD"
    assert quote.change == pytest.approx(175.43 - 171.48)
    assert quote.change_percent == pytest.approx((175.43 - 171.48) / 171.48 * 100)
    assert quote.volume == 58912300
    assert quote.market == "NasdaqGS"
    assert quote.as_of == datetime(2024, 5, 17, 20, 0, tzinfo=UTC)
    assert quote.source == "yahoo"
    assert quote.synthetic is False
    assert quote.summary() == "AAPL: $175.43 (+2.30%)"


async def test_asks_for_daily_bars_over_five_days_as_a_browser(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    route = http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    await yahoo.get_quote("AAPL")

    request = route.calls.last.request
    assert request.url.params["interval"] == "1d"
    assert request.url.params["range"] == "5d"
    assert request.headers["User-Agent"].startswith("Mozilla/5.0")


async def test_a_market_suffix_selects_the_listing(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    route = http_mock.get(YAHOO_CHART_URL + "VOD.L").respond(200, json=aapl_chart)

    await yahoo.get_quote("vod", market="l")

    assert route.call_count == 1


async def test_index_symbols_are_escaped_in_the_path(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    route = http_mock.get(host="query1.finance.yahoo.com").respond(200, json=aapl_chart)

    await yahoo.get_quote("^GSPC")

    assert route.calls.last.request.url.raw_path.startswith(b"/v8/finance/chart/%5EGSPC?")


async def test_previous_close_from_meta_wins_when_present(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    aapl_chart["chart"]["result"][0]["meta"]["previousClose"] = 170.0
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    quote = await yahoo.get_quote("AAPL")

    assert quote.change == pytest.approx(5.43)


async def test_before_the_open_the_last_bar_is_the_previous_close(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    result = aapl_chart["chart"]["result"][0]
    # Monday 10:00 New York, before any Monday bar exists: Friday's close is the reference.
    result["meta"]["regularMarketTime"] = int(datetime(2024, 5, 20, 14, 0, tzinfo=UTC).timestamp())
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    quote = await yahoo.get_quote("AAPL")

    assert quote.change == pytest.approx(0.0)


async def test_with_one_bar_the_chart_previous_close_is_the_reference(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    result = aapl_chart["chart"]["result"][0]
    result["timestamp"] = result["timestamp"][-1:]
    result["indicators"]["quote"][0]["close"] = [175.43]
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    quote = await yahoo.get_quote("AAPL")

    assert quote.change == pytest.approx(175.43 - 170.9)


async def test_a_bar_without_a_close_is_skipped(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    aapl_chart["chart"]["result"][0]["indicators"]["quote"][0]["close"][3] = None
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    quote = await yahoo.get_quote("AAPL")

    assert quote.change == pytest.approx(175.43 - 173.1)


async def test_missing_bars_leave_the_change_unknown(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    result = aapl_chart["chart"]["result"][0]
    del result["timestamp"], result["meta"]["chartPreviousClose"]
    result["indicators"] = {"quote": [{}]}
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    quote = await yahoo.get_quote("AAPL")

    assert quote.change is None
    assert quote.change_percent is None
    assert quote.summary() == "AAPL: $175.43"


async def test_unknown_symbol_raises_symbol_not_found(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, load_json: Callable[[str], Any]
) -> None:
    http_mock.get(YAHOO_CHART_URL + "NOSUCH").respond(
        404, json=load_json("yahoo_chart_not_found.json")
    )

    with pytest.raises(SymbolNotFoundError) as caught:
        await yahoo.get_quote("nosuch")

    assert caught.value.symbol == "NOSUCH"
    assert caught.value.provider == "yahoo"


async def test_a_404_without_yahoos_error_body_is_an_outage(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(AAPL_URL).respond(404, text="<html>Not Found</html>")

    with pytest.raises(ProviderUnavailableError, match="HTTP 404"):
        await yahoo.get_quote("AAPL")


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "HTTP 500 (server error)"), (429, "HTTP 429 (rate limited)")]
)
async def test_error_statuses_raise_provider_unavailable(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, status: int, reason: str
) -> None:
    http_mock.get(AAPL_URL).respond(status, text="upstream trouble")

    with pytest.raises(ProviderUnavailableError) as caught:
        await yahoo.get_quote("AAPL")

    assert caught.value.provider == "yahoo"
    assert reason in caught.value.reason


async def test_a_timeout_raises_provider_unavailable(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(AAPL_URL).mock(side_effect=httpx.ConnectTimeout("timed out"))

    with pytest.raises(ProviderUnavailableError) as caught:
        await yahoo.get_quote("AAPL")

    reason = "request to query1.finance.yahoo.com timed out after 3 s connecting"
    assert caught.value.reason == reason


async def test_a_refused_connection_raises_provider_unavailable(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(AAPL_URL).mock(side_effect=httpx.ConnectError("connection refused"))

    with pytest.raises(ProviderUnavailableError, match="connection refused"):
        await yahoo.get_quote("AAPL")


async def test_a_body_that_is_not_json_raises_provider_unavailable(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(AAPL_URL).respond(200, text='{"chart": {"result": [')

    with pytest.raises(ProviderUnavailableError, match="not valid JSON"):
        await yahoo.get_quote("AAPL")


async def test_json_of_another_shape_raises_provider_unavailable(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, aapl_chart: dict[str, Any]
) -> None:
    del aapl_chart["chart"]["result"][0]["meta"]["regularMarketPrice"]
    http_mock.get(AAPL_URL).respond(200, json=aapl_chart)

    with pytest.raises(ProviderUnavailableError) as caught:
        await yahoo.get_quote("AAPL")

    assert caught.value.reason == (
        "unexpected chart response: chart.result.0.meta.regularMarketPrice: Field required"
    )


async def test_an_empty_result_raises_provider_unavailable(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter
) -> None:
    http_mock.get(AAPL_URL).respond(200, json={"chart": {"result": [], "error": None}})

    with pytest.raises(ProviderUnavailableError, match="no data"):
        await yahoo.get_quote("AAPL")


@pytest.mark.parametrize(("symbol", "market"), [("AA PL", None), ("", None), ("AAPL", "L/N")])
async def test_bad_input_is_rejected_before_any_request(
    yahoo: YahooFinanceProvider, http_mock: respx.MockRouter, symbol: str, market: str | None
) -> None:
    route = http_mock.route(host="query1.finance.yahoo.com").respond(200, json={})

    with pytest.raises(InvalidInputError):
        await yahoo.get_quote(symbol, market=market)

    assert not route.called


def test_a_non_positive_timeout_is_rejected() -> None:
    with pytest.raises(InvalidInputError) as caught:
        YahooFinanceProvider(timeout=0)
    assert caught.value.field == "timeout"


async def test_aclose_leaves_a_shared_client_open() -> None:
    async with httpx.AsyncClient() as client:
        await YahooFinanceProvider(client=client).aclose()
        assert not client.is_closed


async def test_aclose_closes_its_own_client() -> None:
    provider = YahooFinanceProvider()
    await provider.aclose()
    assert provider._client.is_closed
