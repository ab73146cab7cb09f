"""The rules of a write have one home, ``backends.rules``, and every deployment keeps them.

The SQL backend runs the rules themselves; Redis runs them again in Lua (``lua/apply.lua``),
where a write is one atomic script. Each case below is a stored session and one write.
It goes through ``rules.plan_write`` and through the real backend of every deployment,
which must give the same outcome: the same refusal (error type and message) leaving the
session exactly as it was, or the same counters and, read back, the stored session with
the rules' new values. The rules' own outcome is pinned by each case's ``refusal``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from fiml.core.errors import (
    ContextValueError,
    InvalidInputError,
    InvalidTTLError,
    QueryLimitExceededError,
    SessionArchivedError,
    SessionClosedError,
    SessionConflictError,
    SessionExpiredError,
)
from fiml.sessions import QueryRecord, Session, SessionStore
from fiml.sessions.backends.base import HistoryCounters, ListChange, SessionChanges, WriteLimits
from fiml.sessions.backends.fields import session_fields, values_of
from fiml.sessions.backends.rules import PlannedWrite, StoredSession, plan_write
from fiml.sessions.models import MAX_STATE_KEYS, MAX_TAGS, session_from_store, utcnow

LIMITS = WriteLimits(max_queries=4, max_ttl=timedelta(hours=48))
SLIDING = replace(LIMITS, sliding_ttl=True)
HOUR = timedelta(hours=1)
Changes = Callable[[Session, datetime], SessionChanges]


@dataclass(frozen=True)
class Case:
    """A stored session (the defaults of :func:`stored_session`, with ``stored`` set) and
    one write; ``refusal`` is what the rules refuse it with (None: they take it)."""

    name: str
    changes: Changes
    refusal: type[Exception] | None = None
    stored: Callable[[datetime], dict[str, Any]] = lambda now: {}
    limits: WriteLimits = LIMITS


def stored_session(now: datetime, **overrides: Any) -> Session:
    """Open, three writes old, two queries recorded, two context keys, one preference."""
    session = Session(
        type="equity",
        user_id="rules",
        assets=["AAPL", "MSFT"],
        tags=["tech"],
        created_at=now - 3 * HOUR,
    )
    session.add_query(QueryRecord(query_type="price", timestamp=now - 2 * HOUR, cache_hit=True))
    session.add_query(QueryRecord(query_type="news", timestamp=now - HOUR))
    session.state.context.update(thesis="growth", size=2)
    session.state.preferences["currency"] = "USD"
    fields = {"expires_at": now + HOUR, "last_accessed_at": now - HOUR, "version": 3}
    return session.model_copy(update=fields | overrides)


def query(kind: str, at: datetime, *, hit: bool = False) -> QueryRecord:
    return QueryRecord(query_type=kind, timestamp=at, cache_hit=hit, parameters={"q": kind})


def recorded(session: Session, index: int) -> QueryRecord:
    return session.state.history.queries[index]


def keys(count: int, prefix: str = "k") -> dict[str, Any]:
    return {f"{prefix}{i}": i for i in range(count)}


def full_context(now: datetime) -> dict[str, Any]:
    return {"state": {"context": keys(MAX_STATE_KEYS)}}


def twice_one_id(s: Session, now: datetime) -> SessionChanges:
    first = query("price", now)
    return SessionChanges(new_queries=[first, first.model_copy(update={"query_type": "other"})])


CASES = [
    Case("an empty write bumps the version and the access time", lambda s, now: SessionChanges()),
    Case(
        "the access time never moves back",
        lambda s, now: SessionChanges(),
        stored=lambda now: {"last_accessed_at": now + timedelta(minutes=1)},
    ),
    Case(
        "new queries update every counter",
        lambda s, now: SessionChanges(
            new_queries=[query("price", now - 3 * HOUR, hit=True), query("quote", now)]
        ),
    ),
    Case(
        "a query recorded already is not recorded again",
        lambda s, now: SessionChanges(new_queries=[recorded(s, 0)]),
    ),
    Case("a query sent twice in one write is recorded once, as first sent", twice_one_id),
    Case(
        "the query limit counts only the queries not recorded yet",
        lambda s, now: SessionChanges(
            new_queries=[recorded(s, 0), recorded(s, 1), query("a", now), query("b", now)]
        ),
    ),
    Case(
        "one query past the limit refuses the write",
        lambda s, now: SessionChanges(new_queries=[query(k, now) for k in "abc"]),
        QueryLimitExceededError,
    ),
    Case(
        "state keys set and deleted are merged into the stored ones",
        lambda s, now: SessionChanges(
            set_keys={"context": {"thesis": "value", "new": [1]}, "metadata": {"m": True}},
            deleted_keys={"context": ["size"], "preferences": ["not stored"]},
        ),
    ),
    Case(
        "a section filled to its limit is taken",
        lambda s, now: SessionChanges(set_keys={"context": keys(MAX_STATE_KEYS - 2)}),
    ),
    Case(
        "a section one key past its limit refuses the write",
        lambda s, now: SessionChanges(set_keys={"context": keys(MAX_STATE_KEYS - 1)}),
        ContextValueError,
    ),
    Case(
        "a key set and deleted in one write is deleted, and not counted",
        lambda s, now: SessionChanges(
            set_keys={"context": {"extra": 1}}, deleted_keys={"context": ["extra"]}
        ),
        stored=full_context,
    ),
    Case(
        "setting a stored key of a full section is taken",
        lambda s, now: SessionChanges(
            set_keys={"context": {"k0": "new"}}, deleted_keys={"context": ["k1"]}
        ),
        stored=full_context,
    ),
    Case(
        "a key deleted makes room for one set",
        lambda s, now: SessionChanges(
            set_keys={"context": {"extra": 1}}, deleted_keys={"context": ["k1"]}
        ),
        stored=full_context,
    ),
    Case(
        "lists keep their stored order, drop removals and append additions",
        lambda s, now: SessionChanges(
            assets=ListChange(["NVDA", "AAPL", "NVDA"], ["MSFT"]),
            tags=ListChange(["x", "tech"], replace=True),
        ),
    ),
    Case(
        "a list emptied past its minimum refuses the write",
        lambda s, now: SessionChanges(assets=ListChange([], ["AAPL", "MSFT"])),
        InvalidInputError,
    ),
    Case(
        "a list grown past its maximum refuses the write",
        lambda s, now: SessionChanges(tags=ListChange([f"t{i}" for i in range(MAX_TAGS)])),
        InvalidInputError,
    ),
    Case("an extension within the maximum TTL", lambda s, now: SessionChanges(extend_by=HOUR)),
    Case(
        "an extension past the maximum TTL refuses the write",
        lambda s, now: SessionChanges(extend_by=48 * HOUR),
        InvalidTTLError,
    ),
    Case("a later expiry", lambda s, now: SessionChanges(expires_at=now + 10 * HOUR)),
    Case(
        "an expiry in the past refuses the write",
        lambda s, now: SessionChanges(expires_at=now - timedelta(minutes=1)),
        InvalidTTLError,
    ),
    Case(
        "an expiry past the maximum TTL refuses the write",
        lambda s, now: SessionChanges(expires_at=now + 49 * HOUR),
        InvalidTTLError,
    ),
    Case(
        "the stored expiry, sent again, is no change even past the maximum TTL",
        lambda s, now: SessionChanges(expires_at=s.expires_at),
        stored=lambda now: {"expires_at": now + 100 * HOUR},
    ),
    Case("closing ends the session now", lambda s, now: SessionChanges(close=True)),
    Case("ending now brings expiry forward", lambda s, now: SessionChanges(end_now=True)),
    Case(
        "closing after an extension still ends the session now",
        lambda s, now: SessionChanges(extend_by=HOUR, close=True),
    ),
    Case(
        "the expected version, when it is the stored one",
        lambda s, now: SessionChanges(expected_version=3, new_queries=[query("a", now)]),
    ),
    Case(
        "a stale expected version refuses the write",
        lambda s, now: SessionChanges(expected_version=2),
        SessionConflictError,
    ),
    Case(
        "a closed session refuses writes",
        lambda s, now: SessionChanges(),
        SessionClosedError,
        lambda now: {"closed_at": now - HOUR, "expires_at": now - HOUR},
    ),
    Case(
        "a closed session refuses writes before its expiry too",
        lambda s, now: SessionChanges(extend_by=HOUR),
        SessionClosedError,
        lambda now: {"closed_at": now - HOUR},
    ),
    Case(
        "an expired session refuses writes",
        lambda s, now: SessionChanges(extend_by=HOUR),
        SessionExpiredError,
        lambda now: {"expires_at": now - timedelta(seconds=1)},
    ),
    Case(
        "a session expiring this very moment is expired",
        lambda s, now: SessionChanges(),
        SessionExpiredError,
        lambda now: {"expires_at": now},
    ),
    Case(
        "an archived session refuses writes",
        lambda s, now: SessionChanges(),
        SessionArchivedError,
        lambda now: {"archived_at": now - HOUR},
    ),
    Case(
        "archived and closed: archived in SQL; on Redis, frozen but closed, it says closed",
        lambda s, now: SessionChanges(),
        SessionArchivedError,
        lambda now: {"archived_at": now - HOUR, "closed_at": now - HOUR},
    ),
    Case(
        "an expired session is refused before a stale version",
        lambda s, now: SessionChanges(expected_version=0),
        SessionExpiredError,
        lambda now: {"expires_at": now - HOUR},
    ),
    Case(
        "a stale version is refused before the query limit",
        lambda s, now: SessionChanges(
            expected_version=0, new_queries=[query(k, now) for k in "abc"]
        ),
        SessionConflictError,
    ),
    Case(
        "the query limit is checked before the state keys",
        lambda s, now: SessionChanges(
            new_queries=[query(k, now) for k in "abc"],
            set_keys={"context": keys(MAX_STATE_KEYS)},
        ),
        QueryLimitExceededError,
    ),
    Case(
        "the state keys are checked before the lists",
        lambda s, now: SessionChanges(
            set_keys={"preferences": keys(MAX_STATE_KEYS + 1)},
            assets=ListChange([], ["AAPL", "MSFT"]),
        ),
        ContextValueError,
    ),
    Case(
        "the lists are checked before the expiry",
        lambda s, now: SessionChanges(assets=ListChange([], ["AAPL", "MSFT"]), extend_by=48 * HOUR),
        InvalidInputError,
    ),
    Case(
        "a sliding expiry moves later by the time since the last write",
        lambda s, now: SessionChanges(),
        limits=SLIDING,
    ),
    Case(
        "a sliding expiry adds to an extension",
        lambda s, now: SessionChanges(extend_by=HOUR, new_queries=[query("a", now)]),
        limits=SLIDING,
    ),
    Case(
        "a sliding expiry stops at the maximum TTL from creation",
        lambda s, now: SessionChanges(),
        stored=lambda now: {"expires_at": now + 44 * HOUR, "last_accessed_at": now - 2 * HOUR},
        limits=SLIDING,
    ),
    Case(
        "a sliding expiry never brings an expiry past the cap forward",
        lambda s, now: SessionChanges(),
        stored=lambda now: {"expires_at": now + 46 * HOUR},
        limits=SLIDING,
    ),
    Case(
        "closing under a sliding expiry still ends the session now",
        lambda s, now: SessionChanges(close=True),
        limits=SLIDING,
    ),
    Case(
        "ending now under a sliding expiry still ends the session now",
        lambda s, now: SessionChanges(end_now=True),
        limits=SLIDING,
    ),
]


def test_a_sliding_expiry_is_what_the_cases_say() -> None:
    """The sliding cases pinned by their values, not only by agreement."""
    now = utcnow()
    expected = {
        "a sliding expiry moves later by the time since the last write": now + 2 * HOUR,
        "a sliding expiry adds to an extension": now + 3 * HOUR,
        "a sliding expiry stops at the maximum TTL from creation": now + 45 * HOUR,
        "a sliding expiry never brings an expiry past the cap forward": None,
        "closing under a sliding expiry still ends the session now": now,
        "ending now under a sliding expiry still ends the session now": now,
    }
    for case in CASES:
        if case.name not in expected:
            continue
        session, changes = _build(case, now)
        write = plan_write(session.id, _stored(session), changes, now=now, limits=case.limits)
        assert write.values.get("expires_at") == expected[case.name], case.name


def _stored(session: Session) -> StoredSession:
    queries = {q.id for q in session.state.history.queries}
    return StoredSession.of(values_of(session), recorded_query_ids=queries)


def _planned(
    session: Session,
    stored: StoredSession,
    changes: SessionChanges,
    now: datetime,
    limits: WriteLimits = LIMITS,
) -> PlannedWrite | Exception:
    try:
        return plan_write(session.id, stored, changes, now=now, limits=limits)
    except Exception as exc:
        return exc


def _build(case: Case, now: datetime) -> tuple[Session, SessionChanges]:
    fields = case.stored(now)
    state = fields.pop("state", None)
    session = stored_session(now, **fields)
    if state is not None:
        session.state.context.clear()
        session.state.context.update(state["context"])
    return session, case.changes(session, now)


def test_the_rules_decide_each_case_as_it_says() -> None:
    now = utcnow()
    for case in CASES:
        session, changes = _build(case, now)
        outcome = _planned(session, _stored(session), changes, now, case.limits)
        if case.refusal is None:
            assert isinstance(outcome, PlannedWrite), f"{case.name}: {outcome!r}"
        else:
            assert type(outcome) is case.refusal, f"{case.name}: {outcome!r}"


async def _plant(store: SessionStore, session: Session) -> StoredSession:
    """Store ``session`` in the active tier; what it then holds, as the rules see it. Redis
    holds no archived session: there, an archived one is a session an archiver froze."""
    backend = store.backend
    await backend.insert(session)
    stored = _stored(session)
    if session.archived_at is not None and backend.name == "redis":
        await backend.export_sessions([session.id])
        stored = replace(stored, archived_at=None, frozen=True)
    return stored


def _expected_session(session: Session, write: PlannedWrite) -> dict[str, Any]:
    queries = [*session.state.history.queries, *write.new_queries]
    values = values_of(session) | write.values
    return session_from_store(session_fields(values, queries), baseline=False).model_dump()


async def _read_back(store: SessionStore, session: Session) -> dict[str, Any]:
    stored = await store.backend.load(session.id, recent_queries=None)
    assert stored is not None
    return stored.model_dump()


async def _mismatch(store: SessionStore, case: Case, now: datetime) -> str | None:
    """How the active tier's outcome of ``case`` differs from the rules', if it does."""
    session, changes = _build(case, now)
    stored = await _plant(store, session)
    expected = _planned(session, stored, changes, now, case.limits)
    before = await _read_back(store, session)
    actual: HistoryCounters | Exception
    try:
        actual = await store.backend.apply(session.id, changes, now=now, limits=case.limits)
    except Exception as exc:
        actual = exc
    after = await _read_back(store, session)
    if isinstance(expected, Exception):
        if (type(actual), str(actual)) != (type(expected), str(expected)):
            return f"the rules refuse with {expected!r}, the backend gives {actual!r}"
        return None if after == before else "the refused write changed the session"
    if actual != expected.counters:
        return f"the rules give {expected.counters}, the backend {actual!r}"
    if after != _expected_session(session, expected):
        return f"read back {after}, the rules make {_expected_session(session, expected)}"
    return None


async def test_every_deployment_decides_each_write_as_the_rules_do(store: SessionStore) -> None:
    now = utcnow()
    mismatches = {}
    for case in CASES:
        mismatch = await _mismatch(store, case, now)
        if mismatch is not None:
            mismatches[case.name] = mismatch
    assert not mismatches, f"{store.backend.name} differs from the rules: {mismatches}"
