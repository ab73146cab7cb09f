"""What only the Redis tier must do: its keyspace, its round trips, its crash safety.

Everything a user relies on on every deployment is in ``test_store_contract.py``; these
tests look inside Redis (real Redis and PostgreSQL, no fakes) at what the contract cannot
see: hash tags, no TTLs, no keyspace scans, many processes writing at once, and
archival that survives a crash at any step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
import redis.asyncio as redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ResponseError
from sqlalchemy import func, select

from fiml.core.config import Settings
from fiml.core.errors import SessionArchivedError, StorageUnavailableError
from fiml.core.redis_client import redis_pool
from fiml.sessions import ALL_QUERIES, QueryRecord, SessionStore
from fiml.sessions.backends import redis_keys as rk
from fiml.sessions.backends.redis import RedisBackend
from fiml.sessions.db import QueryRow
from fiml.sessions.models import Session, SessionStatus, SessionType, utcnow
from tests.clock import MovableClock
from tests.conftest import REDIS_URL, reset_redis, settings_for, sql_archive
from tests.reliability.archive_checks import sessions_in_redis
from tests.sessions.concurrent_writers import run_workers

HOUR = timedelta(hours=1)
KEYS = rk.RedisKeyspace()
"""The keys of the tests' deployment (the default key prefix)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUERY_ROWS = QueryRow.__table__


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """Redis + PostgreSQL, both emptied."""
    return await settings_for("redis+postgres", tmp_path)


@pytest.fixture
async def store(settings: Settings, clock: MovableClock) -> AsyncIterator[SessionStore]:
    """A store whose active tier is Redis, on the ``clock`` fixture."""
    async with SessionStore(settings, clock=clock) as session_store:
        assert isinstance(session_store.backend, RedisBackend)
        yield session_store


class CommandSpy:
    """Every command and every round trip this process sends to Redis."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.round_trips = 0

    def reset(self) -> None:
        self.commands.clear()
        self.round_trips = 0


def command_names(packed: bytes) -> list[str]:
    """The name of every command in a buffer of RESP-encoded commands."""
    names, position = [], 0
    while position < len(packed):
        end = packed.index(b"\r\n", position)
        count = int(packed[position + 1 : end])
        position = end + 2
        for i in range(count):
            end = packed.index(b"\r\n", position)
            length = int(packed[position + 1 : end])
            if i == 0:
                names.append(packed[end + 2 : end + 2 + length].decode().upper())
            position = end + 2 + length + 2
    return names


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CommandSpy]:
    """Record commands and round trips at the socket, below every client, pipeline and
    packer: what a connection sends is parsed back into command names."""
    recorder = CommandSpy()
    send = AbstractConnection.send_packed_command

    async def send_packed_command(
        self: AbstractConnection, command: bytes | str | list[bytes], *args: Any, **kw: Any
    ) -> None:
        recorder.round_trips += 1
        chunks = [command] if isinstance(command, bytes | str) else command
        packed = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        recorder.commands += command_names(packed)
        await send(self, command, *args, **kw)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
    yield recorder


def query(n: int, *, hit: bool = False) -> QueryRecord:
    return QueryRecord(query_type="price", parameters={"symbol": f"S{n}"}, cache_hit=hit)


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes (the cluster specification's rule)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


async def archived_query_counts(store: SessionStore) -> dict[UUID, int]:
    stmt = select(QUERY_ROWS.c.session_id, func.count()).group_by(QUERY_ROWS.c.session_id)
    async with sql_archive(store).engine.connect() as conn:
        return {sid: n for sid, n in (await conn.execute(stmt)).all()}


SETUP_WRITERS = 16
"""Concurrent callers making or reading a test's many sessions: the data a test starts from
is written (and its end state read back) this many calls at a time, not one by one."""


async def expired_sessions(
    store: SessionStore, clock: MovableClock, n: int, queries: int
) -> list[UUID]:
    """``n`` sessions with ``queries`` queries each, written two hours ago with an hour's
    TTL (the store's clock moved back for them, then to the present again)."""
    ids: list[UUID] = []
    clock.move(-2 * HOUR)

    async def one(i: int) -> None:
        session = await store.create_session(["AAPL"], "equity", user_id=f"u{i % 3}", ttl_hours=1)
        for j in range(queries):
            await store.append_query(session.id, query(j, hit=j == 0))
        ids.append(session.id)

    for start in range(0, n, SETUP_WRITERS):
        await asyncio.gather(*(one(i) for i in range(start, min(start + SETUP_WRITERS, n))))
    clock.move(2 * HOUR)
    return ids


async def assert_archived_exactly(
    store: SessionStore, raw: redis.Redis, ids: list[UUID], queries: int
) -> None:
    """Every session in PostgreSQL once with its whole history; nothing left in Redis."""
    assert await sql_archive(store).count_sessions(archived=True) == len(ids)
    assert await archived_query_counts(store) == {sid: queries for sid in ids}
    assert sorted(await raw.keys("fiml:*")) == sorted([KEYS.layout_marker, KEYS.shard_count_marker])

    async def check(sid: UUID) -> None:
        session = await store.get_session(sid, history_limit=ALL_QUERIES)
        assert session is not None and session.status is SessionStatus.ARCHIVED
        assert len(session.state.history.queries) == session.state.history.total_queries == queries

    for start in range(0, len(ids), SETUP_WRITERS):
        await asyncio.gather(*(check(sid) for sid in ids[start : start + SETUP_WRITERS]))


async def test_keys_of_one_session_share_one_hash_tag(
    store: SessionStore, raw: redis.Redis
) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    await store.append_query(session.id, query(1))
    await store.update_state(
        session.id, context={"a": 1}, preferences={"b": 2}, intermediate_results={"c": 3}
    )
    fresh = await store.get_session(session.id)
    assert fresh is not None
    fresh.state.set_metadata("d", 4)
    await store.update_session(session.id, fresh)

    # decode_responses=True: str keys, though redis-py types them all as bytes | str
    keys = cast(list[str], await raw.keys(f"fiml:s:*{session.id}*"))
    assert sorted(keys) == sorted(KEYS.session_keys(session.id))
    assert {hash_tag(k) for k in keys} == {str(session.id)}
    assert await raw.zscore(KEYS.user_index("u1", session.id), str(session.id)) is not None
    assert await raw.zscore(KEYS.expiry_index(session.id), str(session.id)) is not None


async def test_redis_never_expires_a_session_by_itself(
    store: SessionStore, raw: redis.Redis
) -> None:
    """No key of a session carries a TTL, whatever the write: a TTL would delete a session
    the archive never received whenever archival is held up longer than it."""
    session = await store.create_session(["AAPL"], "equity", ttl_hours=1)
    await store.append_query(session.id, query(1))
    await store.update_state(session.id, context={"a": 1}, preferences={"p": 1})
    await store.extend_session(session.id, 2)
    await store.close_session(session.id)

    keys = await raw.keys(f"fiml:s:*{session.id}*")
    assert len(keys) >= 5
    assert {await raw.pttl(k) for k in keys} == {-1}  # -1: the key exists and has no TTL


async def test_keys_an_older_version_wrote_with_a_ttl_are_made_persistent(
    settings: Settings, raw: redis.Redis
) -> None:
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity")
        await store.append_query(session.id, query(1))
    keys = KEYS.session_keys(session.id)
    for key in (keys.meta, keys.queries, keys.qids):
        await raw.pexpire(key, 3_600_000)  # as the backstop TTL of earlier versions did
    await raw.delete(KEYS.layout_marker)  # a Redis that only earlier versions have used

    async with SessionStore(settings) as store:
        assert {await raw.pttl(k) for k in (keys.meta, keys.queries, keys.qids)} == {-1}
        assert await raw.exists(KEYS.layout_marker)
        reread = await store.get_session(session.id)
        assert reread is not None and reread.state.history.total_queries == 1


async def test_listing_and_cleanup_use_the_indexes_never_a_scan(
    store: SessionStore, spy: CommandSpy
) -> None:
    for i in range(60):
        await store.create_session(["AAPL"], "equity", user_id=f"other{i}")
    mine = [await store.create_session(["AAPL"], "equity", user_id="me") for _ in range(3)]

    spy.reset()
    page = await store.list_user_sessions_page("me", limit=2)
    rest = await store.list_user_sessions_page("me", limit=2, cursor=page.next_cursor)
    assert [s.id for s in page.sessions + rest.sessions] == [s.id for s in reversed(mine)]
    assert spy.round_trips == 4  # index ranges (one pipeline over the shards) + meta reads
    assert (await store.cleanup_expired_sessions()).archived == 0
    assert spy.round_trips == 5  # one count of each expiry shard: nothing is due
    assert not {"SCAN", "KEYS"} & set(spy.commands)
    # per page one range per shard and one meta read per session; cleanup one count per
    # shard and one check for an unsharded index:
    # the cost follows the shard count and the page, not the 63 sessions stored
    assert len(spy.commands) <= 3 * (KEYS.shards + 2)


async def test_tracking_is_one_command_and_reading_one_round_trip_whatever_the_history(
    store: SessionStore, spy: CommandSpy
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    for history in (0, 300):
        for n in range(history):
            await store.append_query(session.id, query(n))
        spy.reset()
        await store.append_query(session.id, query(-1))
        assert spy.commands == ["EVALSHA"] and spy.round_trips == 1
    spy.reset()
    loaded = await store.get_session(session.id)
    assert loaded is not None and len(loaded.state.history.queries) == 20
    assert spy.commands == ["EVALSHA"] and spy.round_trips == 1  # the READ script
    spy.reset()
    assert await store.get_session(session.id, history_limit=0) is not None
    assert spy.commands == ["EVALSHA"]


async def test_a_read_hitting_a_damaged_key_raises_the_redis_error(
    store: SessionStore, raw: redis.Redis
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    keys = KEYS.session_keys(session.id)
    for damaged in (keys.context, keys.meta):
        await raw.delete(damaged)
        await raw.set(damaged, "not a hash")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await store.get_session(session.id)


async def test_reading_is_one_snapshot_under_concurrent_tracking(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity")

    async def track() -> None:
        for n in range(150):
            await store.append_query(session.id, query(n))

    async def read() -> list[Session | None]:
        return [await store.get_session(session.id, history_limit=ALL_QUERIES) for _ in range(150)]

    _, reads = await asyncio.gather(track(), read())
    totals = set()
    for loaded in reads:
        assert loaded is not None
        history = loaded.state.history
        assert len(history.queries) == history.total_queries == loaded.version - session.version
        totals.add(history.total_queries)
    assert len(totals) > 10  # the reads did interleave with the writes


@pytest.mark.timeout(180)
async def test_four_processes_of_fifty_writers_lose_nothing(
    store: SessionStore, settings: Settings
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    await run_workers(settings, "append", session.id, processes=4, writers=50)

    loaded = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert loaded is not None
    history = loaded.state.history
    assert history.total_queries == len(history.queries) == 200
    assert len({q.id for q in history.queries}) == 200
    assert history.cache_hits == 4 * 17 == sum(q.cache_hit for q in history.queries)
    assert history.query_type_counts == {"t0": 100, "t1": 100}
    assert loaded.version == 200


@pytest.mark.timeout(180)
async def test_read_modify_write_across_processes_keeps_every_query_and_key(
    store: SessionStore, settings: Settings
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    await run_workers(settings, "update", session.id, processes=2, writers=25)

    loaded = await store.get_session(session.id, history_limit=ALL_QUERIES)
    assert loaded is not None
    assert loaded.state.history.total_queries == len(loaded.state.history.queries) == 50
    assert loaded.state.history.cache_hits == 2 * 9
    assert set(loaded.state.context) == {f"p{p}-{i}" for p in range(2) for i in range(25)}


async def test_expired_sessions_move_to_postgres_with_their_history(
    store: SessionStore, raw: redis.Redis, clock: MovableClock
) -> None:
    ids = await expired_sessions(store, clock, 20, queries=3)
    for sid in ids:
        expired = await store.get_session(sid)
        assert expired is not None and expired.status is SessionStatus.EXPIRED

    assert (await store.cleanup_expired_sessions()).archived == 20
    await assert_archived_exactly(store, raw, ids, queries=3)
    assert (await store.cleanup_expired_sessions()).archived == 0


async def test_two_stores_cleaning_up_at_once_archive_each_session_once(
    store: SessionStore, raw: redis.Redis, settings: Settings, clock: MovableClock
) -> None:
    ids = await expired_sessions(store, clock, 30, queries=2)
    async with SessionStore(settings) as a, SessionStore(settings) as b:
        counts = await asyncio.gather(
            a.cleanup_expired_sessions(batch_size=7), b.cleanup_expired_sessions(batch_size=7)
        )
    assert sum(c.archived for c in counts) == 30
    await assert_archived_exactly(store, raw, ids, queries=2)


async def test_a_batch_of_many_chunks_archives_each_session_once(
    store: SessionStore, raw: redis.Redis, clock: MovableClock
) -> None:
    ids = await expired_sessions(store, clock, 620, queries=1)  # three chunks of a 1000-id batch
    assert (await store.cleanup_expired_sessions()).archived == 620
    await assert_archived_exactly(store, raw, ids, queries=1)


async def test_a_failing_chunk_is_reported_and_the_next_cleanup_finishes(
    store: SessionStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    ids = await expired_sessions(store, clock, 600, queries=1)
    archive = sql_archive(store)
    import_archived = archive.import_archived
    calls = 0

    async def second_chunk_fails(
        sessions: list[Session], *, archived_at: datetime, **options: Any
    ) -> tuple[int, int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StorageUnavailableError("postgresql", "connection reset")
        return await import_archived(sessions, archived_at=archived_at, **options)

    monkeypatch.setattr(archive, "import_archived", second_chunk_fails)
    report = await store.cleanup_expired_sessions()
    monkeypatch.undo()

    assert report.failed > 0 and "connection reset" in (report.error or "")
    assert report.archived + report.failed == 600 and report.quarantined == 0
    assert 0 < await archive.count_sessions(archived=True) < 600
    assert len(await sessions_in_redis(raw)) == report.failed  # nothing dropped
    assert (await store.cleanup_expired_sessions()).archived == report.failed
    await assert_archived_exactly(store, raw, ids, queries=1)


@pytest.mark.parametrize("crash_after", ["export", "import", "delete_keys"])
async def test_a_crash_at_any_step_of_archival_loses_and_duplicates_nothing(
    store: SessionStore, raw: redis.Redis, crash_after: str, clock: MovableClock
) -> None:
    ids = await expired_sessions(store, clock, 6, queries=3)
    backend = store.backend
    due = await backend.expired_ids(now=utcnow(), limit=100)
    assert sorted(due) == sorted(ids)
    exported = (await backend.export_sessions(due)).sessions
    copied = 0
    if crash_after in ("import", "delete_keys"):
        copied, _ = await store.archive.import_archived(exported, archived_at=utcnow())
    if crash_after == "delete_keys":
        await raw.unlink(*[k for sid in ids for k in KEYS.session_keys(sid)])

    assert copied + (await store.cleanup_expired_sessions()).archived == 6
    for user in ("u0", "u1", "u2"):  # a listing drops user-index entries left by the crash
        assert await store.list_user_sessions(user) == []
    for key in await raw.keys("fiml:assets:{*}:*"):  # and a search, asset-index ones
        user, asset = str(key).split("{", 1)[1].split("}:", 1)
        found = await store.search_user_sessions(user, asset=asset, include_archived=False)
        assert found.sessions == []
    await assert_archived_exactly(store, raw, ids, queries=3)


async def test_an_exported_session_refuses_writes(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity")
    await store.append_query(session.id, query(1))
    [exported] = (await store.backend.export_sessions([session.id])).sessions
    with pytest.raises(SessionArchivedError):
        await store.append_query(session.id, query(2))
    loaded = await store.get_session(session.id)
    assert loaded is not None
    assert loaded.state.history.total_queries == exported.state.history.total_queries == 1


async def test_close_is_archived_at_once_and_extend_is_rescored(
    store: SessionStore, raw: redis.Redis, clock: MovableClock
) -> None:
    closed = await store.create_session(["AAPL"], "equity", ttl_hours=48)
    await store.close_session(closed.id)
    extended = await store.create_session(["MSFT"], "equity", ttl_hours=1)
    extended = await store.extend_session(extended.id, 1)
    clock.move(1.5 * HOUR)  # past its first expiry (its index entry), not its extended one

    assert (await store.cleanup_expired_sessions()).archived == 1
    archived = await store.get_session(closed.id)
    assert archived is not None and archived.status is SessionStatus.ARCHIVED
    still = await store.get_session(extended.id)
    assert still is not None and still.status is SessionStatus.ACTIVE
    score = await raw.zscore(KEYS.expiry_index(extended.id), str(extended.id))
    assert score == (extended.expires_at - EPOCH) // timedelta(microseconds=1)


async def test_ties_in_creation_time_list_exactly_like_sql(store: SessionStore) -> None:
    created = utcnow()
    sessions = [
        Session(
            user_id="u1",
            type=SessionType.EQUITY,
            assets=["AAPL"],
            created_at=created + timedelta(seconds=i // 4),
            expires_at=created + timedelta(hours=1),
        )
        for i in range(9)
    ]
    for session in sessions:
        await store.backend.insert(session)

    async def listed(tier: SessionStore) -> list[UUID]:
        ids, cursor = [], None
        while True:
            page = await tier.list_user_sessions_page("u1", limit=2, cursor=cursor)
            ids += [s.id for s in page.sessions]
            if (cursor := page.next_cursor) is None:
                return ids

    newest_first = sorted(sessions, key=lambda s: (s.created_at, s.id), reverse=True)
    async with SessionStore(Settings(database_url=store.settings.database_url)) as sql_only:
        for session in sessions:
            await sql_only.backend.insert(session)
        assert await listed(store) == await listed(sql_only) == [s.id for s in newest_first]


async def test_sessions_whose_keys_vanished_leave_no_hole_in_listing_or_cleanup(
    store: SessionStore, raw: redis.Redis, clock: MovableClock
) -> None:
    kept = [await store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(3)]
    lost = [
        await store.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=1) for _ in range(3)
    ]
    await raw.unlink(*[k for s in lost for k in KEYS.session_keys(s.id)])

    page = await store.list_user_sessions_page("u1", limit=3)
    assert [s.id for s in page.sessions] == [s.id for s in reversed(kept)]
    assert sum([await raw.zcard(k) for k in KEYS.user_shards("u1")]) == 3
    clock.move(2 * HOUR)  # the lost sessions are due, the kept ones (a day's TTL) are not
    assert (await store.cleanup_expired_sessions()).archived == 0
    assert sum([await raw.zcard(k) for k in KEYS.expiry_shards()]) == 3


@pytest.mark.timeout(60)
async def test_two_hundred_concurrent_creates_wait_for_a_small_pool(tmp_path: Path) -> None:
    settings = await settings_for("redis+postgres", tmp_path, redis_max_connections=8)
    async with SessionStore(settings) as store:
        results = await asyncio.gather(
            *(store.create_session(["AAPL"], "equity", user_id="u1") for _ in range(200)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        assert len(await store.list_user_sessions("u1", limit=1000)) == 200
        assert isinstance(store.backend, RedisBackend)
        assert isinstance(store.backend.redis, redis.Redis)
        pool = store.backend.redis.connection_pool
        assert isinstance(pool, BlockingConnectionPool) and pool.max_connections == 8


async def test_scripts_flushed_from_redis_are_loaded_again(
    store: SessionStore, raw: redis.Redis
) -> None:
    session = await store.create_session(["AAPL"], "equity")
    await raw.script_flush()
    await store.append_query(session.id, query(1))
    await raw.script_flush()
    await store.create_session(["MSFT"], "equity")
    await raw.script_flush()
    assert await store.backend.remove_archived([session.id]) == 1


def test_the_client_speaks_tls_or_a_unix_socket_as_its_url_says() -> None:
    for url, connection_class in (
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///run/redis.sock?db=0", UnixDomainSocketConnection),
    ):
        pool = redis_pool(url, Settings(redis_max_connections=3, redis_timeout_seconds=1))
        assert isinstance(pool, BlockingConnectionPool)
        assert issubclass(pool.connection_class, connection_class) and pool.max_connections == 3


async def test_unreachable_redis_is_a_storage_error() -> None:
    backend = RedisBackend.from_url("redis://127.0.0.1:1/0", settings=Settings())
    try:
        with pytest.raises(StorageUnavailableError) as caught:
            await backend.initialize()
        assert caught.value.backend == "redis"
    finally:
        await backend.close()


async def test_postgres_only_mode_loses_nothing_to_a_redis_flush(
    tmp_path: Path, raw: redis.Redis
) -> None:
    settings = await settings_for("postgres", tmp_path)
    await reset_redis(REDIS_URL)
    async with SessionStore(settings) as store:
        session = await store.create_session(["AAPL"], "equity", user_id="u1")
        await store.append_query(session.id, query(1, hit=True))
        await store.update_state(session.id, context={"thesis": "long"})
        assert await raw.dbsize() == 0
        await raw.set("unrelated", "1")
        await raw.flushdb()

        loaded = await store.get_session(session.id)
        assert loaded is not None
        assert loaded.state.history.total_queries == loaded.state.history.cache_hits == 1
        assert loaded.state.context == {"thesis": "long"}
    async with SessionStore(settings) as again:
        assert [s.id for s in await again.list_user_sessions("u1")] == [session.id]


async def test_an_asset_index_entry_lost_in_a_crash_comes_back_with_the_next_write(
    store: SessionStore, raw: redis.Redis
) -> None:
    """The asset index is written after the apply script: a process dying in between leaves
    the session's ``assets`` set without the asset, so the next write bringing it indexes it."""
    session = await store.create_session(["AAPL"], "equity", user_id="crash")
    tracked = QueryRecord(query_type="q", parameters={"symbol": "NVDA"})
    await store.append_query(session.id, tracked)
    found = await store.search_user_sessions("crash", asset="NVDA")
    assert [s.id for s in found.sessions] == [session.id]

    await raw.zrem(KEYS.user_asset_index("crash", "NVDA"), str(session.id))  # the crash
    await raw.srem(KEYS.session_keys(session.id).assets, "NVDA")
    assert (await store.search_user_sessions("crash", asset="NVDA")).sessions == []

    await store.append_query(session.id, QueryRecord(query_type="q", parameters={"symbol": "nvda"}))
    found = await store.search_user_sessions("crash", asset="NVDA")
    assert [s.id for s in found.sessions] == [session.id]
