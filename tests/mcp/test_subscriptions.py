"""Resource subscriptions: a subscriber of a session is told when it changes, on the 2025
protocol (``resources/subscribe``, ``notifications/resources/updated``) and on the 2026 one
(``subscriptions/listen``); only of sessions it may read, and no longer once it may not.

Each test's writes go through another client's server sharing the store, as through another
process: the subscriber's server finds them by polling (every 20 ms here). Nothing is timed:
a notice is awaited, and its absence is shown by a later notice arriving first.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.session import IncomingMessage
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ResourceUpdatedNotification
from pydantic import ValidationError

from fiml.core.config import Settings
from fiml.market.service import MarketData
from fiml.mcp import Identity, StaticIdentity, build_server
from fiml.mcp.session_watch import NotListeningYet, SessionWatch, Subscriber
from fiml.mcp.subscriptions import SessionSubscriptions
from fiml.sessions.models import QueryRecord
from fiml.sessions.store import SessionStore
from tests.conftest import migrated_sqlite_url
from tests.mcp.conftest import Connect, new_session, ok
from tests.mcp.live_servers import http_client, http_server, write_tokens

WAIT = 30.0
"""Seconds any awaited notice may take before the test fails (a hang, not a speed check)."""
MAX_SUBSCRIPTIONS = 3
HTTP_WAIT = 120.0
"""Seconds an HTTP test may take, a server process's start included."""


@pytest.fixture
def mcp_settings(tmp_path: Path) -> Settings:
    """The conftest's settings, polling often and with a small subscription cap."""
    return Settings(
        database_url=migrated_sqlite_url(tmp_path),
        redis_url=None,
        market_provider="offline",
        resource_poll_seconds=0.02,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS,
    )


class Subscribed:
    """A 2025 client that subscribes and collects the updates it is told of."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.send, self.updates = anyio.create_memory_object_stream[str](100)
        self.client = Client(server, mode="legacy", message_handler=self._handle)

    async def _handle(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            await self.send.send(message.params.uri)

    async def subscribe(self, session_id: str) -> None:
        with warnings.catch_warnings():  # the 2025 method, deprecated by the 2026 protocol
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.client.session.subscribe_resource(f"session://{session_id}")

    async def unsubscribe(self, session_id: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.client.session.unsubscribe_resource(f"session://{session_id}")

    async def next_update(self) -> str:
        with anyio.fail_after(WAIT):
            uri = await self.updates.receive()
        return uri.removeprefix("session://")


Subscribe = Callable[..., AbstractAsyncContextManager[Subscribed]]


def server_of(store: SessionStore, market: MarketData, user: str, **options: Any) -> MCPServer:
    identity = StaticIdentity(Identity(user, "user"))
    return build_server(store=store, market=market, identity=identity, **options)


def watch_of(server: MCPServer) -> SessionWatch:
    [subscriptions] = [m for m in server.middleware if isinstance(m, SessionSubscriptions)]
    return subscriptions.watch


@pytest.fixture
def subscriber(session_store: SessionStore, market: MarketData) -> Subscribe:
    @asynccontextmanager
    async def open_subscriber(user: str = "alice") -> AsyncIterator[Subscribed]:
        subscribed = Subscribed(server_of(session_store, market, user))
        async with subscribed.client:
            yield subscribed

    return open_subscriber


async def write(client: Client, session_id: str, how: str = "context") -> None:
    """A write to the session: a context update, or a tracked query."""
    if how == "context":
        await ok(client, "update-session-context", session_id=session_id, context={"k": how})
    else:
        await ok(client, "search-by-symbol", symbol="AAPL", session_id=session_id)


@pytest.mark.parametrize("how", ["context", "query"])
async def test_a_2025_subscriber_is_told_of_writes_to_its_session_only(
    connect: Connect, subscriber: Subscribe, how: str
) -> None:
    async with connect("alice") as writer, subscriber("alice") as alice:
        watched, other = await new_session(writer), await new_session(writer)
        assert alice.client.server_capabilities.resources is not None
        assert alice.client.server_capabilities.resources.subscribe is True
        await alice.subscribe(watched)

        await write(writer, other, how)
        await write(writer, watched, how)
        first = await alice.next_update()
        await write(writer, watched, how)
        second = await alice.next_update()

    assert [first, second] == [watched, watched]


async def test_a_write_through_the_subscribers_own_server_is_told_without_waiting_a_round(
    subscriber: Subscribe,
) -> None:
    async with subscriber("alice") as alice:
        sid = await new_session(alice.client)
        watch_of(alice.server).poll_seconds = 3600  # only the write's own wake-up can tell it
        await alice.subscribe(sid)
        await write(alice.client, sid, "query")

        assert await alice.next_update() == sid


async def test_a_foreign_or_unknown_session_is_refused_alike(
    connect: Connect, subscriber: Subscribe
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    async with connect("alice") as owner, subscriber("bob") as bob:
        foreign = await new_session(owner)
        with pytest.raises(MCPError) as refused_foreign:
            await bob.subscribe(foreign)
        with pytest.raises(MCPError) as refused_unknown:
            await bob.subscribe(unknown)
        with pytest.raises(MCPError) as read_refused:
            await bob.client.read_resource(f"session://{foreign}")

    assert refused_foreign.value.error.code == refused_unknown.value.error.code
    assert refused_foreign.value.error.code == read_refused.value.error.code
    assert str(refused_foreign.value).replace(foreign, unknown) == str(refused_unknown.value)
    assert str(refused_foreign.value) == str(read_refused.value)


async def test_a_shared_session_is_told_until_it_is_unshared(
    connect: Connect, subscriber: Subscribe
) -> None:
    async with connect("alice") as alice, subscriber("bob") as bob, connect("bob") as bob_writes:
        shared, own = await new_session(alice), await new_session(bob_writes)
        await ok(alice, "share-session", session_id=shared, user_id="bob")
        await bob.subscribe(shared)
        await bob.subscribe(own)

        await write(alice, shared)
        told_while_shared = await bob.next_update()
        await ok(alice, "unshare-session", session_id=shared, user_id="bob")
        await write(alice, shared)
        await write(bob_writes, own)
        told_after = await bob.next_update()

    assert told_while_shared == shared
    assert told_after == own  # the write to the unshared session, made first, was not told


async def test_unsubscribing_stops_the_notices(connect: Connect, subscriber: Subscribe) -> None:
    async with connect("alice") as writer, subscriber("alice") as alice:
        left, kept = await new_session(writer), await new_session(writer)
        await alice.subscribe(left)
        await alice.subscribe(kept)
        await alice.unsubscribe(left)

        await write(writer, left)
        await write(writer, kept)
        told = await alice.next_update()

    assert told == kept


async def test_a_connection_has_at_most_the_cap_of_subscriptions(
    connect: Connect, subscriber: Subscribe
) -> None:
    async with connect("alice") as writer, subscriber("alice") as alice:
        sids = [await new_session(writer) for _ in range(MAX_SUBSCRIPTIONS + 1)]
        for sid in sids[:MAX_SUBSCRIPTIONS]:
            await alice.subscribe(sid)
        await alice.subscribe(sids[0])  # again: still the same subscriptions
        with pytest.raises(MCPError) as refused:
            await alice.subscribe(sids[-1])
        await alice.unsubscribe(sids[0])
        await alice.subscribe(sids[-1])

    assert "invalid uri" in str(refused.value)
    assert f"at most {MAX_SUBSCRIPTIONS} subscriptions" in str(refused.value)


async def test_a_closed_connection_leaves_no_polling_task(
    connect: Connect, subscriber: Subscribe
) -> None:
    async with connect("alice") as writer:
        sid = await new_session(writer)
        async with subscriber("alice") as alice:
            await alice.subscribe(sid)
            watch = watch_of(alice.server)
            assert watch.polling
        with anyio.fail_after(WAIT):
            await watch.wait_idle()

    assert not watch.polling


async def test_unsubscribing_the_last_session_ends_the_polling_task(
    subscriber: Subscribe,
) -> None:
    async with subscriber("alice") as alice:
        sid = await new_session(alice.client)
        await alice.subscribe(sid)
        await alice.unsubscribe(sid)
        watch = watch_of(alice.server)
        with anyio.fail_after(WAIT):
            await watch.wait_idle()

        assert not watch.polling


async def test_without_lasting_connections_2025_subscriptions_are_not_offered(
    session_store: SessionStore, market: MarketData
) -> None:
    subscribed = Subscribed(server_of(session_store, market, "alice", legacy_subscriptions=False))
    async with subscribed.client:
        sid = await new_session(subscribed.client)
        resources = subscribed.client.server_capabilities.resources
        with pytest.raises(MCPError) as refused:
            await subscribed.subscribe(sid)

    assert resources is not None and not resources.subscribe
    assert "Method not found" in str(refused.value)


# The 2026 protocol: a subscriptions/listen stream naming session URIs.


async def test_a_listen_stream_is_told_of_its_sessions_only_and_not_after_unsharing(
    connect: Connect,
) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        shared, other, own = (
            await new_session(alice),
            await new_session(alice),
            await new_session(bob),
        )
        await ok(alice, "share-session", session_id=shared, user_id="bob")
        uris = [f"session://{shared}", f"session://{own}"]
        async with bob.listen(resource_subscriptions=uris) as stream:
            events = aiter(stream)
            await write(alice, other)
            await write(alice, shared, "query")
            with anyio.fail_after(WAIT):
                first = await anext(events)
            await ok(alice, "unshare-session", session_id=shared, user_id="bob")
            await write(alice, shared)
            await write(bob, own)
            with anyio.fail_after(WAIT):
                second = await anext(events)

    assert [getattr(first, "uri", None), getattr(second, "uri", None)] == uris


async def test_a_listen_stream_naming_a_foreign_session_is_refused(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        foreign = await new_session(alice)
        with pytest.raises(MCPError) as refused:
            async with bob.listen(resource_subscriptions=[f"session://{foreign}"]):
                pass

    assert f"session {foreign} not found" in str(refused.value)


async def test_a_listen_stream_has_at_most_the_cap_of_sessions(connect: Connect) -> None:
    async with connect("alice") as alice:
        uris = [f"session://{await new_session(alice)}" for _ in range(MAX_SUBSCRIPTIONS + 1)]
        with pytest.raises(MCPError) as refused:
            async with alice.listen(resource_subscriptions=uris):
                pass

    assert "invalid resourceSubscriptions" in str(refused.value)


async def test_a_closed_listen_stream_leaves_no_polling_task(
    session_store: SessionStore, market: MarketData
) -> None:
    server = server_of(session_store, market, "alice")
    async with Client(server) as alice:
        sid = await new_session(alice)
        async with alice.listen(resource_subscriptions=[f"session://{sid}"]):
            watch = watch_of(server)
            assert watch.polling
        with anyio.fail_after(WAIT):
            await watch.wait_idle()

    assert not watch.polling


# Over HTTP, with bearer tokens: a real server process, two users.


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_over_http_a_listen_stream_is_told_of_a_shared_session_and_refused_others(
    tmp_path: Path, stateless: bool
) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", alice="user", bob="user")
    env = {"FIML_RESOURCE_POLL_SECONDS": "0.05"}
    with anyio.fail_after(HTTP_WAIT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=stateless, env=env) as server,
            http_client(server.url, tokens["alice"]) as alice,
            http_client(server.url, tokens["bob"]) as bob,
        ):
            shared, private = await new_session(alice), await new_session(alice)
            await ok(alice, "share-session", session_id=shared, user_id="bob")
            with pytest.raises(MCPError) as refused:
                async with bob.listen(resource_subscriptions=[f"session://{private}"]):
                    pass
            async with bob.listen(resource_subscriptions=[f"session://{shared}"]) as stream:
                await write(alice, private)
                await write(alice, shared)
                told = await anext(aiter(stream))

    assert f"session {private} not found" in str(refused.value)
    assert getattr(told, "uri", None) == f"session://{shared}"


async def test_over_stateful_http_a_2025_client_is_told_and_stateless_refuses(
    tmp_path: Path,
) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", alice="user")
    env = {"FIML_RESOURCE_POLL_SECONDS": "0.05"}
    updates, received = anyio.create_memory_object_stream[str](10)

    async def handle(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            await updates.send(message.params.uri)

    async def subscribe(client: Client, session_id: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.session.subscribe_resource(f"session://{session_id}")

    with anyio.fail_after(HTTP_WAIT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", env=env) as server,
            http_client(server.url, tokens["alice"], mode="legacy", on_message=handle) as alice,
        ):
            sid = await new_session(alice)
            await subscribe(alice, sid)
            await write(alice, sid)
            told = await received.receive()
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=True, env=env) as server,
            http_client(server.url, tokens["alice"], mode="legacy") as stateless,
        ):
            offered = stateless.server_capabilities.resources
            with pytest.raises(MCPError) as refused:
                await subscribe(stateless, sid)

    assert told == f"session://{sid}"
    assert offered is not None and not offered.subscribe
    assert "Method not found" in str(refused.value)


async def test_a_notice_that_cannot_be_told_yet_is_told_the_next_round(
    session_store: SessionStore,
) -> None:
    """A listen stream checked but not yet listening (its listener not registered) keeps
    the change for the next round: neither lost nor the subscription dropped."""
    session = await session_store.create_session(["AAPL"], "equity", user_id="alice")
    told: list[str] = []
    refused: list[str] = []

    async def send(uri: str) -> None:
        if not refused:
            refused.append(uri)
            raise NotListeningYet(uri)
        told.append(uri)

    watch = SessionWatch(session_store)
    stream = Subscriber("alice", send)
    await watch.subscribe(stream, session.id, field="resourceSubscriptions")
    try:
        await session_store.append_query(session.id, QueryRecord(query_type="price"))
        await watch.poll_once()  # not listening yet
        assert told == [] and watch.has(stream)
        await watch.poll_once()  # listening: the same change, told now
        assert told == [f"session://{session.id}"]
        await watch.poll_once()  # and once only
        assert told == [f"session://{session.id}"]
    finally:
        watch.drop(stream)
        await watch.wait_idle()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resource_poll_seconds", 0),
        ("resource_poll_seconds", 3601),
        ("max_subscriptions_per_connection", 0),
        ("max_subscriptions_per_connection", 10_001),
    ],
)
def test_the_subscription_settings_refuse_what_is_out_of_range(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})
