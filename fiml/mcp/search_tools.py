"""The market-data tools: a quote for a symbol or a coin, tracked in a session on request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from fiml.core.errors import InvalidInputError
from fiml.market.service import MarketData, QuoteResult
from fiml.mcp.arguments import OptionalSessionIdArg, RequestIdArg, argument
from fiml.mcp.auth import IdentityResolver
from fiml.mcp.boundary import tool_boundary
from fiml.mcp.replies import REPLY_BUDGET_BYTES, reply, sized_reply
from fiml.mcp.schemas import (
    QuoteView,
    RecentQuery,
    SearchResult,
    SessionContext,
    SessionReply,
)
from fiml.mcp.tracking import check_request_id, track_query_in_session
from fiml.sessions.store import SessionStore

__all__ = ["DEFAULT_RECENT", "MAX_RECENT", "SearchTools"]

Detail = Literal["none", "brief", "recent"]
_DETAILS: tuple[Detail, ...] = ("none", "brief", "recent")
DEFAULT_RECENT = 5
"""Queries a tracked search recalls with context='recent', unless told how many."""
MAX_RECENT = 20
"""The most queries a tracked search recalls; get-session-history pages through the rest."""

SymbolArg = Annotated[str, argument("A ticker, e.g. 'AAPL', 'BRK-B' or 'VOD.L'.")]
MarketArg = Annotated[
    str | None,
    argument("An exchange suffix to quote the symbol on, e.g. 'L' for London."),
]
CoinArg = Annotated[
    str,
    argument("A coin, e.g. 'BTC'; may carry its pair: 'BTC/USDT', 'ETH-EUR'."),
]
PairArg = Annotated[
    str | None,
    argument("The asset to price the coin in, e.g. 'USDT' (the default) or 'EUR'."),
]
ContextArg = Annotated[
    str | None,
    argument(
        "With a session_id: how much of the session to send back. 'none': the "
        "query count; 'brief' (the default): also the assets and the context key names; "
        "'recent': the query count, the assets, the latest queries (see recent_queries) and "
        "the context with its values.",
        schema={"enum": [*_DETAILS, None]},
    ),
]
RecentCountArg = Annotated[
    int | None,
    argument(
        f"With context='recent': how many of the latest queries to send back "
        f"(1-{MAX_RECENT}, default {DEFAULT_RECENT}).",
        schema={"minimum": 1, "maximum": MAX_RECENT},
    ),
]
Reply = Annotated[CallToolResult, SearchResult]
"""A :class:`SearchResult`, sent compact (:func:`~fiml.mcp.replies.reply`)."""

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
    ) -> None:
        self.store = store
        self.market = market
        self.identity = identity

    def register(self, server: MCPServer) -> None:
        """Add both search tools to ``server``."""
        for name, method in (
            ("search-by-symbol", self.search_by_symbol),
            ("search-by-coin", self.search_by_coin),
        ):
            server.add_tool(
                tool_boundary(name, self.identity)(method), name=name, annotations=_SEARCH
            )

    async def search_by_symbol(
        self,
        symbol: SymbolArg,
        market: MarketArg = None,
        session_id: OptionalSessionIdArg = None,
        request_id: RequestIdArg = None,
        context: ContextArg = None,
        recent_queries: RecentCountArg = None,
    ) -> Reply:
        """The latest quote for an equity symbol.

        With a session_id the query is recorded in that session (type, parameters, result
        summary, timing, cache hit) and the reply says how many queries the session holds;
        by default also its assets and its context key names, so you can build on earlier
        queries (context='recent' for the latest queries and the
        context's values, context='none' for the count alone). Give a request_id to make a
        retry safe: the same request_id is recorded once.
        """
        parameters = _given(symbol=symbol, market=market)
        return await self._search(
            "search_by_symbol",
            parameters,
            lambda: self.market.search_symbol(symbol, market=market),
            session_id,
            request_id,
            _detail(context, recent_queries, session_id),
        )

    async def search_by_coin(
        self,
        symbol: CoinArg,
        pair: PairArg = None,
        session_id: OptionalSessionIdArg = None,
        request_id: RequestIdArg = None,
        context: ContextArg = None,
        recent_queries: RecentCountArg = None,
    ) -> Reply:
        """The latest quote for a cryptocurrency.

        With a session_id the query is recorded in that session (type, parameters, result
        summary, timing, cache hit) and the reply says how many queries the session holds;
        by default also its assets and its context key names, so you can build on earlier
        queries (context='recent' for the latest queries and the
        context's values, context='none' for the count alone). Give a request_id to make a
        retry safe: the same request_id is recorded once.
        """
        parameters = _given(symbol=symbol, pair=pair)
        return await self._search(
            "search_by_coin",
            parameters,
            lambda: self.market.search_coin(symbol, pair=pair),
            session_id,
            request_id,
            _detail(context, recent_queries, session_id),
        )

    async def _search(
        self,
        query_type: str,
        parameters: dict[str, Any],
        search: Callable[[], Awaitable[QuoteResult]],
        session_id: str | None,
        request_id: str | None,
        detail: tuple[Detail, int],
    ) -> CallToolResult:
        if session_id is None:
            if request_id is not None:
                check_request_id(request_id)
                raise InvalidInputError(
                    "request_id", request_id, "needs a session_id: only tracked queries repeat"
                )
            quote = await search()
            return reply(_search_result(quote), omit_null=True)
        level, recalled = detail
        tracked = await track_query_in_session(
            self.store,
            session_id,
            identity=self.identity.current(),
            query_type=query_type,
            parameters=parameters,
            search=search,
            recent_queries=recalled,
            request_id=request_id,
        )
        session = _session_reply(tracked.context, level)
        answer = _search_result(tracked.result, session, repeated=tracked.repeated)
        if level == "recent":
            return reply(answer, omit_null=True)
        return _within_budget(answer, session)


def _given(**values: str | None) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _detail(context: Any, recent_queries: Any, session_id: str | None) -> tuple[Detail, int]:
    """How much of the session to send back, and how many queries that takes to load.

    Brief and 'none' replies recall no query, but the store loads at least this one.
    """
    for name, value in (("context", context), ("recent_queries", recent_queries)):
        if value is not None and session_id is None:
            raise InvalidInputError(name, value, "needs a session_id: only tracked queries")
    if context is None:
        context = "brief"
    if context not in _DETAILS:
        raise InvalidInputError("context", context, f"must be one of {', '.join(_DETAILS)}")
    if recent_queries is None:
        return context, DEFAULT_RECENT if context == "recent" else 1
    if context != "recent":
        raise InvalidInputError("recent_queries", recent_queries, "needs context='recent'")
    if (
        isinstance(recent_queries, bool)
        or not isinstance(recent_queries, int)
        or not 1 <= recent_queries <= MAX_RECENT
    ):
        raise InvalidInputError(
            "recent_queries", recent_queries, f"must be a whole number from 1 to {MAX_RECENT}"
        )
    return "recent", recent_queries


def _session_reply(context: SessionContext, level: Detail) -> SessionReply:
    if level == "none":
        return SessionReply(total_queries=context.total_queries)
    if level == "recent":
        return SessionReply(
            total_queries=context.total_queries,
            assets=context.assets,
            recent_queries=RecentQuery.from_views(context.recent_queries),
            context=context.context,
        )
    return SessionReply(
        total_queries=context.total_queries,
        assets=context.assets,
        context_keys=list(context.context) or None,
    )


def _within_budget(result: SearchResult, session: SessionReply) -> CallToolResult:
    """The reply, with the last context keys, then the last assets, left out until it fits
    in :data:`~fiml.mcp.replies.REPLY_BUDGET_BYTES` (a session's labels are the caller's,
    up to 50 assets and 200 keys: the bound must not depend on them)."""
    sent, size = sized_reply(result, omit_null=True)
    keys, assets = list(session.context_keys or ()), list(session.assets or ())
    while size > REPLY_BUDGET_BYTES and (keys or assets):
        if keys:
            keys.pop()
        else:
            assets.pop()
        trimmed = session.model_copy(update={"context_keys": keys or None, "assets": assets})
        sent, size = sized_reply(result.model_copy(update={"session": trimmed}), omit_null=True)
    return sent


def _search_result(
    result: QuoteResult,
    session: SessionReply | None = None,
    *,
    repeated: bool = False,
) -> SearchResult:
    return SearchResult(
        quote=QuoteView.from_quote(result.quote),
        cache_hit=result.cache_hit,
        tracked=session is not None,
        repeated=True if repeated else None,
        session=session,
    )
