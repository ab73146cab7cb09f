"""The public Python API of SessionStore, fuzzed: random methods, random (mostly wrong)
arguments, on a real store.

Through Python anything can arrive where the MCP layer would have checked a schema: any
object, bools for ints, 400-digit integers, models built or changed behind pydantic's
back, sessions edited in place. Every call either succeeds or raises a FimlError; any
other exception fails the test. A refused call leaves the session it named (read whole)
and the fuzzing user's list of sessions exactly as they were, and a read changes nothing.

``FIML_FUZZ_EXAMPLES`` sizes the run: five API calls per example of the tool fuzzers
(300 by default; ``FIML_FUZZ_EXAMPLES=400`` runs 2,000).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fiml.core.errors import FimlError
from fiml.sessions import ALL_QUERIES, QueryRecord, Session, SessionStore
from tests.conftest import settings_for
from tests.fuzz.strategies import (
    EXAMPLES,
    FUZZ,
    anything,
    huge_ints,
    key_text,
    labels,
    numbers,
    small_values,
    text,
    weighted,
)

T = TypeVar("T")
API_EXAMPLES = 5 * EXAMPLES
USER = "fuzz"
POOL = ("closed", "expired", "archived")
READS = {
    "get_session",
    "get_history",
    "get_timeline",
    "list_user_sessions",
    "list_user_sessions_page",
    "list_quarantined",
}
EMPTIES_POOL = {
    "delete_session",
    "archive_session",
    "delete_old_archived_sessions",
    "cleanup_expired_sessions",
}
"""Methods whose success can remove or archive a pool session: the pool is made again."""


@dataclass(frozen=True)
class Ref:
    """A session of the run, named; the test swaps it for that session's id."""

    name: str
    spelling: int = 0


python_junk = st.sampled_from(
    [
        object(),
        b"bytes",
        bytearray(b"x"),
        {1, 2},
        (1, 2),
        Ellipsis,
        print,
        UUID(int=0),
        datetime(2026, 1, 1),
        timedelta(hours=1),
        float("nan"),
        float("inf"),
        -float("inf"),
        -0.0,
        10**400,
        True,
        False,
        None,
        complex(1, 1),
    ]
)
junk_keys = st.sampled_from([b"k", (1, 2), 5, 1.5, None, True, UUID(int=0), frozenset({1})])
"""Keys a dict can hold that JSON cannot (or not as themselves)."""
wild = st.one_of(anything, python_junk)
"""Any value at all: the wrong type for nearly every argument."""
counts = weighted(
    (3, st.integers(-3, 120)), (1, huge_ints), (1, st.booleans()), (1, numbers), (1, python_junk)
)
session_refs = weighted(
    (5, st.builds(Ref, st.just("active"), st.integers(0, 4))),
    (2, st.builds(Ref, st.sampled_from([*POOL, "unknown"]), st.integers(0, 4))),
    (1, wild),
    (1, text),
)


def _tampered_query(draw: st.DrawFn) -> Any:
    query = QueryRecord(query_type="price", parameters={"symbol": "AAPL"})
    field_name = draw(st.sampled_from(sorted(QueryRecord.model_fields)))
    query.__dict__[field_name] = draw(wild)
    return query


@st.composite
def queries(draw: st.DrawFn) -> Any:
    """Valid queries, queries changed behind the model's back, and things that are not."""
    kind = draw(st.sampled_from(["valid", "valid", "tampered", "constructed", "edited", "junk"]))
    fields: dict[str, Any]
    if kind == "valid":
        fields = {
            "query_type": draw(st.sampled_from(["price", "news", "q" * 64])),
            "parameters": draw(st.dictionaries(key_text, small_values, max_size=3)),
            "result_summary": draw(st.one_of(st.none(), st.text(max_size=40))),
            "cache_hit": draw(st.booleans()),
        }
        try:
            return QueryRecord(**fields)
        except ValidationError:  # text no tier can hold: the store must refuse it too
            return QueryRecord.model_construct(**fields)
    if kind == "tampered":
        return _tampered_query(draw)
    if kind == "constructed":
        names = sorted(QueryRecord.model_fields)
        fields = draw(st.dictionaries(st.sampled_from(names), wild, max_size=3))
        return QueryRecord.model_construct(**fields)
    if kind == "edited":
        query = QueryRecord(query_type="price")
        key: Any = draw(st.one_of(key_text, junk_keys))  # an edit in place is not type-checked
        query.parameters[key] = draw(wild)
        return query
    return draw(wild)


Edit = Callable[[Session], None]


@st.composite
def edits(draw: st.DrawFn) -> Edit:
    """One change a caller makes to a session it read, in place or by assignment."""
    kind = draw(
        st.sampled_from(
            ["state", "state", "delete", "section", "asset", "tag", "query", "expiry", "attr"]
        )
    )
    section = draw(st.sampled_from(["context", "preferences", "intermediate_results", "metadata"]))
    if kind == "state":
        key, value = draw(st.one_of(key_text, junk_keys)), draw(wild)
        return lambda s: getattr(s.state, section).__setitem__(key, value)
    if kind == "delete":
        return lambda s: getattr(s.state, section).pop("thesis", None)
    if kind == "section":
        replacement = draw(wild)
        return lambda s: setattr(s.state, section, replacement)
    if kind in ("asset", "tag"):
        value = draw(st.one_of(text, python_junk))
        return lambda s: getattr(s, "assets" if kind == "asset" else "tags").append(value)
    if kind == "query":
        query = draw(queries())
        return lambda s: s.state.history.queries.append(query)
    if kind == "expiry":
        shift = draw(st.one_of(st.floats(-1e4, 1e4), st.sampled_from([0.0, -1e-6, 168.0, 169.0])))
        return lambda s: setattr(s, "expires_at", datetime.now(UTC) + timedelta(hours=shift))
    name = draw(st.sampled_from(["assets", "tags", "version", "expires_at", "id", "state"]))
    value = draw(wild)
    return lambda s: s.__dict__.__setitem__(name, value)  # behind the model's back


@dataclass
class Driver:
    """The store under fuzz in a portal's event loop, with sessions in every state."""

    portal: BlockingPortal
    store: SessionStore
    pool: dict[str, UUID] = field(default_factory=dict)

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(function, *args)

    def fresh(self) -> UUID:
        """A new active session with a query and some state."""

        async def create() -> UUID:
            session = await self.store.create_session(["AAPL", "BTC"], "equity", user_id=USER)
            await self.store.update_state(session.id, context={"thesis": [1, "two"]})
            await self.store.append_query(session.id, QueryRecord(query_type="price"))
            return session.id

        return self.run(create)

    def session_of(self, name: str) -> UUID:
        """A pool session (closed, expired, archived), made again if a call removed it."""
        if not self.pool:

            async def make() -> dict[str, UUID]:
                store = self.store
                made = {}
                for state in POOL:
                    ttl = 1e-9 if state == "expired" else None
                    created = await store.create_session(["MSFT"], "macro", USER, ttl_hours=ttl)
                    made[state] = created.id
                await store.close_session(made["closed"])
                await store.archive_session(made["archived"])
                return made

            self.pool = self.run(make)
        return self.pool[name]

    def forget(self, session_id: UUID) -> None:
        """Delete a session made for one example, so the user's list stays short."""
        self.run(self.store.delete_session, session_id)

    def snapshot(self, session_id: UUID | None) -> tuple[Any, ...]:
        """The named session read whole (None if absent), and the user's list of sessions."""

        async def read() -> tuple[Any, ...]:
            whole = None
            if session_id is not None:
                found = await self.store.get_session(session_id, history_limit=ALL_QUERIES)
                whole = None if found is None else found.model_dump()
            listed = await self.store.list_user_sessions_page(
                USER, include_archived=True, limit=1000
            )
            return whole, [s.model_dump() for s in listed.sessions]

        return self.run(read)


_SPELLINGS: tuple[Callable[[UUID], Any], ...] = (
    lambda sid: sid,
    str,
    lambda sid: str(sid).upper(),
    lambda sid: "{" + str(sid) + "}",
    lambda sid: f"  {sid}\n",
)


def _resolve(driver: Driver, ref: Any, active: UUID) -> tuple[Any, UUID | None]:
    """A drawn session argument as passed, and the id of the session it names (if any)."""
    if not isinstance(ref, Ref):
        return ref, None
    if ref.name == "unknown":
        sid = UUID("00000000-0000-4000-8000-000000000000")
    elif ref.name == "active":
        sid = active
    else:
        sid = driver.session_of(ref.name)
    return _SPELLINGS[ref.spelling](sid), sid


REQUIRED = {
    "create_session": ["assets", "session_type"],
    "append_query": ["query"],
    "extend_session": ["hours"],
    "list_user_sessions": ["user_id"],
    "list_user_sessions_page": ["user_id"],
    "fork_session": ["user_id"],
}
"""Each method's required arguments but the session id, in order (passed positionally)."""


def _arguments(method: str, data: st.DataObject) -> dict[str, Any]:
    """Keyword arguments for ``method``: each present or absent, well-typed or wild."""

    required = set(REQUIRED.get(method, []))

    def maybe(name: str, typed: st.SearchStrategy[Any]) -> dict[str, Any]:
        absent = data.draw(st.integers(0, 9 if name in required else 1), label=f"{name} absent")
        if absent == 0:
            return {}
        return {name: data.draw(weighted((3, typed), (1, wild)), label=name)}

    hours = weighted((2, st.floats(0, 200)), (1, st.sampled_from([1, 24, 168, 169])), (1, numbers))
    states = st.dictionaries(st.one_of(key_text, junk_keys), wild, max_size=4)
    by_method: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "get_session": {"history_limit": weighted((3, counts), (1, st.just(ALL_QUERIES)))},
        "get_history": {"offset": counts, "limit": counts},
        "get_timeline": {
            "limit": counts,
            "cursor": st.one_of(st.none(), text, st.sampled_from(["ZTox", "ZTow", "ZTotMQ"])),
        },
        "fork_session": {
            "user_id": st.sampled_from([USER, "nobody", "", "u" * 256, None]),
            "after_queries": counts,
            "at": st.datetimes(timezones=st.sampled_from([UTC, None])),
        },
        "create_session": {
            "assets": labels,
            "session_type": st.sampled_from(["equity", "crypto", " Macro ", "astrology"]),
            "user_id": st.sampled_from([USER, None, "", "u" * 256, f"{USER}\x00"]),
            "ttl_hours": hours,
            "tags": labels,
        },
        "append_query": {"query": queries()},
        "update_state": {
            "context": states,
            "preferences": states,
            "intermediate_results": states,
            "remove_context": st.lists(st.one_of(key_text, junk_keys), max_size=3),
        },
        "extend_session": {"hours": hours},
        "update_session": {"strict": st.booleans()},
        "list_user_sessions": {
            "user_id": st.sampled_from([USER, "nobody"]),
            "include_archived": st.booleans(),
            "limit": counts,
        },
        "list_user_sessions_page": {
            "user_id": st.sampled_from([USER, "nobody"]),
            "include_archived": st.booleans(),
            "limit": counts,
            "cursor": st.one_of(st.none(), text, st.just("W1siMjAyNiIsIngiXV0")),
        },
        "delete_old_archived_sessions": {"retention_days": hours},
        "cleanup_expired_sessions": {"batch_size": counts},
        "list_quarantined": {"limit": counts, "user_id": st.sampled_from([None, USER, ""])},
    }
    arguments: dict[str, Any] = {}
    for name, typed in by_method.get(method, {}).items():
        arguments.update(maybe(name, typed))
    return arguments


METHODS = [
    "get_session",
    "get_history",
    "get_timeline",
    "fork_session",
    "create_session",
    "update_session",
    "append_query",
    "update_state",
    "extend_session",
    "close_session",
    "delete_session",
    "list_user_sessions",
    "list_user_sessions_page",
    "archive_session",
    "delete_old_archived_sessions",
    "cleanup_expired_sessions",
    "list_quarantined",
]
"""Every public method of the store."""
TAKES_SESSION = set(METHODS) - {
    "create_session",
    "list_user_sessions",
    "list_user_sessions_page",
    "delete_old_archived_sessions",
    "cleanup_expired_sessions",
    "list_quarantined",
}


def _positional(method: str, arguments: dict[str, Any]) -> list[Any]:
    """Required arguments a method takes positionally, moved out of ``arguments``."""
    return [arguments.pop(name, None) for name in REQUIRED.get(method, [])]


def _edited_copy(driver: Driver, sid: UUID, junk: Any, changes: list[Edit]) -> Any:
    """``update_session``'s second argument: a read copy with ``changes`` made, or ``junk``."""
    copy = driver.run(driver.store.get_session, sid)
    if junk is not None or copy is None:
        return junk
    for edit in changes:
        # An edit can fail on the caller's side (the model refuses it, or an earlier edit
        # replaced what it edits): the caller's problem, not the store's.
        with contextlib.suppress(ValidationError, FimlError, AttributeError, TypeError):
            edit(copy)
    return copy


KINDS = ["sqlite", "postgres", "redis+postgres"]


@pytest.fixture(scope="module", params=KINDS)
def driver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Driver]:
    """A store on one deployment, shared by every example of the module."""
    with start_blocking_portal() as portal:
        configured = portal.call(settings_for, request.param, tmp_path_factory.mktemp("api"))
        with portal.wrap_async_context_manager(SessionStore(configured)) as store:
            yield Driver(portal, store)


@pytest.mark.timeout(120 + API_EXAMPLES // 4)  # a long run takes minutes per deployment
@settings(FUZZ, max_examples=API_EXAMPLES)
@given(data=st.data())
def test_any_call_succeeds_or_raises_a_fiml_error_and_a_refusal_changes_nothing(
    driver: Driver, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(METHODS), label="method")
    arguments = _arguments(method, data)
    positional = _positional(method, arguments)
    ref = data.draw(session_refs, label="session_id") if method in TAKES_SESSION else None
    if method == "update_session":  # drawn before the store is read: draws never depend on it
        junk = data.draw(wild, label="session") if data.draw(st.integers(0, 5)) == 0 else None
        changes = data.draw(st.lists(edits(), min_size=1, max_size=4), label="edits")
    active = driver.fresh()
    named: UUID | None = None
    if method in TAKES_SESSION:
        session_arg, named = _resolve(driver, ref, active)
        positional.insert(0, session_arg)
        if method == "update_session":
            positional.append(_edited_copy(driver, named or active, junk, changes))
    watched = named or active
    before = driver.snapshot(watched)

    try:
        result = driver.run(lambda: getattr(driver.store, method)(*positional, **arguments))
    except FimlError as refused:
        named_field = str(getattr(refused, "field", "")).split("[")[0]
        event(f"{method}: {type(refused).__name__} {named_field}".strip())
        assert driver.snapshot(watched) == before, f"refused {method} changed the store"
        driver.forget(active)
        return
    event(f"{method}: succeeded")
    if method in READS:
        assert driver.snapshot(watched) == before, f"{method} changed the store"
    if method in EMPTIES_POOL:
        driver.pool.clear()
    driver.forget(active)
    if isinstance(result, Session):
        driver.forget(result.id)
