"""The market-data tools: a quote for a symbol or a coin, tracked in a session on request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from fiml.core.errors import InvalidInputError
from fiml.market.service import MarketData, QuoteResult
from fiml.mcp.arguments import OptionalSessionIdArg, RequestIdArg
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.schemas import QuoteView, SearchResult, SessionContext
from fiml.mcp.tracking import DEFAULT_CONTEXT_QUERIES, check_request_id, track_query_in_session
from fiml.sessions.store import SessionStore

__all__ = ["SearchTools"]

SymbolArg = Annotated[str, Field(description="A ticker, e.g. 'AAPL', 'BRK-B' or 'VOD.L'.")]
MarketArg = Annotated[
    str | None,
    Field(description="An exchange suffix to quote the symbol on, e.g. 'L' for London."),
]
CoinArg = Annotated[
    str,
    Field(description="A coin, e.g. 'BTC'; may carry its pair: 'BTC/USDT', 'ETH-EUR'."),
]
PairArg = Annotated[
    str | None,
    Field(description="The asset to price the coin in, e.g. 'USDT' (the default) or 'EUR'."),
]

# Reads from a provider (open world); with a session_id it also records the query.
_SEARCH = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)


class SearchTools:
    """Quote lookups through :class:`~fiml.market.service.MarketData`, tracked on request."""

    def __init__(
        self,
        store: SessionStore,
        market: MarketData,
        identity: IdentityResolver,
        *,
        context_queries: int = DEFAULT_CONTEXT_QUERIES,
    ) -> None:
        self.store = store
        self.market = market
        self.identity = identity
        self.context_queries = context_queries

    def register(self, server: MCPServer) -> None:
        """Add both search tools to ``server``."""
        for name, method in (
            ("search-by-symbol", self.search_by_symbol),
            ("search-by-coin", self.search_by_coin),
        ):
            server.add_tool(tool_boundary(name)(method), name=name, annotations=_SEARCH)

    async def search_by_symbol(
        self,
        symbol: SymbolArg,
        market: MarketArg = None,
        session_id: OptionalSessionIdArg = None,
        request_id: RequestIdArg = None,
    ) -> SearchResult:
        """The latest quote for an equity symbol.

        With a session_id the query is recorded in that session (type, parameters, result
        summary, timing, cache hit) and the result carries the session's context: its
        assets, recent queries and context keys, so you can build on earlier queries. Give
        a request_id to make a retry safe: the same request_id is recorded once.
        """
        parameters = _given(symbol=symbol, market=market)
        return await self._search(
            "search_by_symbol",
            parameters,
            lambda: self.market.search_symbol(symbol, market=market),
            session_id,
            request_id,
        )

    async def search_by_coin(
        self,
        symbol: CoinArg,
        pair: PairArg = None,
        session_id: OptionalSessionIdArg = None,
        request_id: RequestIdArg = None,
    ) -> SearchResult:
        """The latest quote for a cryptocurrency.

        With a session_id the query is recorded in that session (type, parameters, result
        summary, timing, cache hit) and the result carries the session's context: its
        assets, recent queries and context keys, so you can build on earlier queries. Give
        a request_id to make a retry safe: the same request_id is recorded once.
        """
        parameters = _given(symbol=symbol, pair=pair)
        return await self._search(
            "search_by_coin",
            parameters,
            lambda: self.market.search_coin(symbol, pair=pair),
            session_id,
            request_id,
        )

    async def _search(
        self,
        query_type: str,
        parameters: dict[str, Any],
        search: Callable[[], Awaitable[QuoteResult]],
        session_id: str | None,
        request_id: str | None,
    ) -> SearchResult:
        if session_id is None:
            if request_id is not None:
                check_request_id(request_id)
                raise InvalidInputError(
                    "request_id", request_id, "needs a session_id: only tracked queries repeat"
                )
            result = await search()
            return _search_result(result, result.execution_time_ms)
        tracked = await track_query_in_session(
            self.store,
            session_id,
            identity=self.identity.current(),
            query_type=query_type,
            parameters=parameters,
            search=search,
            recent_queries=self.context_queries,
            request_id=request_id,
        )
        elapsed = tracked.query.execution_time_ms or 0.0
        return _search_result(
            tracked.result, elapsed, session=tracked.context, repeated=tracked.repeated
        )


def _given(**values: str | None) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _search_result(
    result: QuoteResult,
    elapsed_ms: float,
    *,
    session: SessionContext | None = None,
    repeated: bool = False,
) -> SearchResult:
    return SearchResult(
        quote=QuoteView.from_quote(result.quote),
        cache_hit=result.cache_hit,
        execution_time_ms=elapsed_ms,
        tracked=session is not None,
        repeated=repeated,
        session=session,
    )
