"""The session demo: a whole multi-query analysis workflow, printed step by step.

``fiml demo`` and ``python examples/session_demo.py`` both run :func:`run_demo`. It uses
the store the settings describe (with nothing configured, the embedded SQLite file;
``FIML_DATABASE_URL`` and ``FIML_REDIS_URL`` are honoured) and the offline market-data
provider, so it needs no network and every quote it shows is synthetic, and says so.
Searches are tracked exactly as the MCP search tools track them
(:func:`~fiml.mcp.tracking.track_query_in_session`). Each run adds one session, so the
demo can be run again and again on the same database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from fiml.cli.failures import shown_database, shown_redis
from fiml.cli.render import key_value_table, queries_table, span, stats_view, when
from fiml.cli.runtime import open_store
from fiml.core.config import Settings
from fiml.core.errors import SessionNotFoundError, SessionNotWritableError
from fiml.market.service import MarketData, QuoteResult
from fiml.mcp.auth import Identity
from fiml.mcp.tracking import TrackedQuery, track_query_in_session
from fiml.sessions.analytics import SessionAnalytics, SessionStats
from fiml.sessions.jobs import run_cleanup
from fiml.sessions.models import QueryRecord, Session, SessionType
from fiml.sessions.store import SessionStore

__all__ = [
    "DEMO_ASSETS",
    "DEMO_USER",
    "SEARCHES",
    "DemoResult",
    "Search",
    "SessionDemo",
    "run_demo",
]

DEMO_USER = "demo_analyst"
"""Whose sessions the demo creates (``fiml demo --user`` picks another)."""

DEMO_ASSETS = ("AAPL", "GOOGL", "MSFT", "BTC")


@dataclass(frozen=True, slots=True)
class Search:
    """One search the demo's agent makes: a tool's query type and a symbol."""

    query_type: str
    symbol: str


SEARCHES = (
    Search("search_by_symbol", "AAPL"),
    Search("search_by_symbol", "GOOGL"),
    Search("search_by_symbol", "MSFT"),
    Search("search_by_coin", "BTC"),
    Search("search_by_symbol", "AAPL"),  # asked again: served from the quote cache
)


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What a demo run did: its session, the queries it tracked, the analytics it read."""

    session_id: UUID
    total_queries: int
    archived: bool
    stats: SessionStats


class SessionDemo:
    """The demo's steps, each printing what it does to ``console``."""

    def __init__(
        self, store: SessionStore, market: MarketData, console: Console, identity: Identity
    ) -> None:
        self.store = store
        self.market = market
        self.console = console
        self.identity = identity
        self.analytics = SessionAnalytics(store)
        self._step = 0

    async def _load(self, session_id: UUID, *, queries: int = 0) -> Session:
        session = await self.store.get_session(session_id, history_limit=queries)
        if session is None:
            raise SessionNotFoundError(session_id)
        return session

    def _title(self, text: str) -> None:
        self._step += 1
        self.console.print()
        self.console.rule(f"[bold]{self._step}. {text}", align="left")

    async def run(self) -> DemoResult:
        """Run every step on a new session; see the module docstring."""
        self._intro()
        session = await self.create_session()
        tracked = await self.track_searches(session.id)
        await self.accumulate_context(session.id, tracked)
        await self.show_recent_queries(session.id)
        await self.show_session_stats(session.id)
        await self.extend(session.id)
        await self.close(session.id)
        archived = await self.clean_up(session.id)
        stats = await self.show_analytics()
        self._outro(session.id)
        return DemoResult(session.id, len(tracked), archived, stats)

    def _intro(self) -> None:
        settings = self.store.settings
        where = shown_database(settings)
        if settings.redis_url:
            where = f"{shown_redis(settings)} (active) + {where} (archive)"
        self.console.print(
            Panel.fit(
                f"FIML analysis sessions: demo\nuser: {escape(self.identity.user_id)}\n"
                f"store: {escape(where)}\n"
                "quotes: offline provider. [bold]SYNTHETIC prices[/bold], not market data; "
                "each is marked \\[synthetic]",
                title="fiml demo",
            )
        )

    async def create_session(self) -> Session:
        """Open a comparative session on four assets for two hours."""
        self._title("Create an analysis session")
        session = await self.store.create_session(
            assets=list(DEMO_ASSETS),
            session_type=SessionType.COMPARATIVE,
            user_id=self.identity.user_id,
            ttl_hours=2,
            tags=["demo", "big-tech-vs-btc"],
        )
        self.console.print(f"Session created: {session.id}", soft_wrap=True)
        self.console.print(
            key_value_table(
                [
                    ("type", session.type.value),
                    ("assets", ", ".join(session.assets)),
                    ("tags", ", ".join(session.tags)),
                    ("expires", f"{when(session.expires_at)} (in {span(session.time_remaining)})"),
                ]
            )
        )
        return session

    def _search_call(self, search: Search) -> Callable[[], Awaitable[QuoteResult]]:
        if search.query_type == "search_by_coin":
            return lambda: self.market.search_coin(search.symbol)
        return lambda: self.market.search_symbol(search.symbol)

    async def track_searches(self, session_id: UUID) -> list[TrackedQuery]:
        """Make every search in :data:`SEARCHES`, each tracked in the session."""
        self._title("Search, tracking every query in the session")
        tracked: list[TrackedQuery] = []
        for number, search in enumerate(SEARCHES, start=1):
            done = await track_query_in_session(
                self.store,
                session_id,
                identity=self.identity,
                query_type=search.query_type,
                parameters={"symbol": search.symbol},
                search=self._search_call(search),
            )
            tracked.append(done)
            query = done.query
            self.console.print(
                f"  query {number}: {search.query_type}({search.symbol}) -> "
                f"{query.result_summary}  [{'cache hit' if query.cache_hit else 'cache miss'}, "
                f"{query.execution_time_ms or 0:.1f} ms]",
                markup=False,
                soft_wrap=True,
            )
        hits = sum(t.query.cache_hit for t in tracked)
        self.console.print(f"Queries tracked: {len(tracked)} ({hits} served from the cache)")
        last = tracked[-1].context
        self.console.print(
            f"The last search handed back the session's context: {last.total_queries} queries "
            f"so far on {', '.join(last.assets)}, so the agent builds on what it asked before.",
            markup=False,
        )
        return tracked

    async def accumulate_context(self, session_id: UUID, tracked: list[TrackedQuery]) -> None:
        """Keep findings in the session: atomically, and through an edited Session object."""
        self._title("Accumulate context")
        quotes = {t.result.quote.symbol: t.result.quote for t in tracked}
        equities = [q for q in quotes.values() if q.asset_class == "equity"]
        leader = max(equities, key=lambda q: q.change_percent or 0.0)
        await self.store.update_state(
            session_id,
            context={"focus": "relative performance", "leader": leader.symbol},
            intermediate_results={"prices": {s: q.price for s, q in quotes.items()}},
        )
        session = await self._load(session_id)
        session.state.update_context("preference", "detailed")
        session.state.set_preference("currency", "USD")
        await self.store.update_session(session.id, session)
        saved = await self._load(session_id)
        state = saved.state
        self.console.print(
            key_value_table(
                [
                    *((f"context.{k}", v) for k, v in state.context.items()),
                    *((f"preferences.{k}", v) for k, v in state.preferences.items()),
                    ("intermediate_results", ", ".join(state.intermediate_results)),
                ],
                title="Stored in the session (synthetic prices)",
            )
        )

    async def show_recent_queries(self, session_id: UUID) -> None:
        """Read the session back with only its three latest queries."""
        self._title("Recent queries")
        session = await self._load(session_id, queries=3)
        history = session.state.history
        first = history.total_queries - len(history.queries) + 1
        title = f"The {len(history.queries)} most recent of {history.total_queries} queries"
        self.console.print(queries_table(history.queries, title=title, first_number=first))

    async def show_session_stats(self, session_id: UUID) -> None:
        """The session's own counters, which cover its whole history."""
        self._title("Session statistics")
        session = await self._load(session_id)
        history = session.state.history
        types = history.get_query_types_summary()
        self.console.print(
            key_value_table(
                [
                    ("total queries", history.total_queries),
                    ("cache hit rate", f"{history.cache_hit_rate:.0%}"),
                    ("query types", ", ".join(f"{k} {v}" for k, v in types.items())),
                    ("duration so far", span(session.duration)),
                    ("time remaining", span(session.time_remaining)),
                ]
            )
        )

    async def extend(self, session_id: UUID) -> None:
        """Give the session another hour."""
        self._title("Extend the session")
        before = await self._load(session_id)
        after = await self.store.extend_session(session_id, 1)
        gained = after.expires_at - before.expires_at
        self.console.print(
            f"Extended by {span(gained)}: expires {when(before.expires_at)} -> "
            f"{when(after.expires_at)}"
        )

    async def close(self, session_id: UUID) -> None:
        """Close the session; it becomes read-only."""
        self._title("Close the session")
        closed = await self.store.close_session(session_id)
        self.console.print(f"Session status: {closed.status.value}")
        try:
            await self.store.append_query(session_id, QueryRecord(query_type="search_by_symbol"))
        except SessionNotWritableError as refused:
            self.console.print(
                f"A further query is refused: {refused}", markup=False, soft_wrap=True
            )

    async def clean_up(self, session_id: UUID) -> bool:
        """Run the cleanup job, which archives closed and expired sessions."""
        self._title("Clean up: archive finished sessions")
        stats = await run_cleanup(self.store, self.analytics)
        self.console.print(
            f"Cleanup archived {stats.archived} session(s) and recorded analytics facts for "
            f"{stats.metrics_recorded}."
        )
        session = await self._load(session_id)
        self.console.print(
            f"This session is now {session.status.value}; it is kept for "
            f"{self.store.settings.session_retention_days:g} days and stays readable."
        )
        return session.is_archived

    async def show_analytics(self) -> SessionStats:
        """Usage statistics over the demo user's sessions of the last day."""
        self._title("Analytics")
        stats = await self.analytics.get_session_stats(user_id=self.identity.user_id, days=1)
        title = f"Sessions of {self.identity.user_id} in the last day"
        self.console.print(stats_view(stats, title=title))
        return stats

    def _outro(self, session_id: UUID) -> None:
        self.console.print()
        self.console.print(
            f"Done. Look at the session again with: fiml sessions show {session_id}\n"
            "Run the demo again: it adds another session to the same database.",
            markup=False,
            soft_wrap=True,
        )


async def run_demo(
    settings: Settings | None = None,
    *,
    console: Console | None = None,
    user_id: str = DEMO_USER,
) -> DemoResult:
    """Run the demo on the store ``settings`` describe (default: from the environment)."""
    # open_store shuts the store down even when initializing it fails part-way.
    async with open_store(settings or Settings()) as store, MarketData.offline() as market:
        demo = SessionDemo(store, market, console or Console(), Identity(user_id))
        return await demo.run()
