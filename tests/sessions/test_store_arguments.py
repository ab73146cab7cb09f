"""Every argument of every public SessionStore method, given the wrong thing, gets a
typed error naming it, and the store is left as it was."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from fiml.core.config import Settings
from fiml.core.errors import FimlError, InvalidInputError
from fiml.sessions import Session, SessionStore
from tests.sessions.test_input_values import snapshot

NOT_NUMBERS: list[Any] = [None, "1", [1], {"n": 1}, b"1", object()]
NOT_INTEGERS: list[Any] = [*NOT_NUMBERS, True, False, 1.0, float("nan"), float("inf")]
BAD_NUMBERS: list[Any] = [*NOT_NUMBERS, True, float("nan"), float("inf"), -float("inf"), 10**400]
BAD_OPTIONAL_NUMBERS = [value for value in BAD_NUMBERS if value is not None]  # None: the default

Call = Callable[[SessionStore, Session], Awaitable[object]]


def by_name(method: str, *args: Any, **kwargs: Any) -> Call:
    """``store.<method>(*args, **kwargs)``, the method picked by name to loop over several."""
    return lambda st, s: getattr(st, method)(*args, **kwargs)


def state_update(section: str, value: Any) -> Call:
    """``store.update_state`` of the test session with ``value`` as its ``section``."""
    return lambda st, s: st.update_state(s.id, **{section: value})


def _calls() -> list[tuple[str, Any, Call]]:
    """(argument, bad value, the call passing it)."""
    calls: list[tuple[str, Any, Call]] = []

    def add(field: str, values: list[Any], make: Callable[[Any], Call]) -> None:
        calls.extend((field, value, make(value)) for value in values)

    add(
        "history_limit",
        [value for value in NOT_INTEGERS if value is not None] + [-2, -(10**30), 2**31, 10**400],
        lambda v: lambda st, s: st.get_session(s.id, history_limit=v),
    )
    add(
        "offset", [*NOT_INTEGERS, -1, 2**63], lambda v: lambda st, s: st.get_history(s.id, offset=v)
    )
    add("limit", [*NOT_INTEGERS, 0, 1001], lambda v: lambda st, s: st.get_history(s.id, limit=v))
    for bad_id in (None, 5, [1], "", "x" * 10_000, "\x00", b"\x00" * 16):
        for method in ("get_session", "close_session", "delete_session", "archive_session"):
            calls.append(("session_id", bad_id, by_name(method, bad_id)))
    add(
        "assets",
        [None, "AAPL", 5, [], [5], [None], {"AAPL": 1}],
        lambda v: lambda st, s: st.create_session(v, "equity", user_id="u1"),
    )
    add(
        "session_type",
        [None, 5, ["equity"], "", "astrology"],
        lambda v: lambda st, s: st.create_session(["AAPL"], v, user_id="u1"),
    )
    add(
        "user_id",
        [5, "", "u" * 256, ["u1"], b"u1"],
        lambda v: lambda st, s: st.create_session(["AAPL"], "equity", user_id=v),
    )
    add(
        "ttl_hours",
        [*BAD_OPTIONAL_NUMBERS, 0, -1, 10**6],
        lambda v: lambda st, s: st.create_session(["AAPL"], "equity", user_id="u1", ttl_hours=v),
    )
    add(
        "tags",
        ["tech", 5, [5], [""], {"t": 1}],
        lambda v: lambda st, s: st.create_session(["AAPL"], "equity", user_id="u1", tags=v),
    )
    add(
        "session",
        [None, 5, "session", {"id": "x"}],
        lambda v: lambda st, s: st.update_session(s.id, v),
    )
    add("strict", [None, 1, "yes"], lambda v: lambda st, s: st.update_session(s.id, s, strict=v))
    add(
        "query",
        [None, 5, {"query_type": "price"}],
        lambda v: lambda st, s: st.append_query(s.id, v),
    )
    for section in ("context", "preferences", "intermediate_results"):
        add(
            section,
            [5, "k", ["k"], {1: 1}, {"k": float("nan")}, {"k": object()}],
            partial(state_update, section),
        )
    add(
        "remove_context",
        [5, None, "k", [5], [None], [""]],
        lambda v: lambda st, s: st.update_state(s.id, remove_context=v),
    )
    add("hours", [*BAD_NUMBERS, 0, -1, 10**6], lambda v: lambda st, s: st.extend_session(s.id, v))
    for method in ("list_user_sessions", "list_user_sessions_page"):
        add("user_id", [None, 5, "", ["u1"], "u\x00"], partial(by_name, method))
        for value in [None, 1, "yes"]:
            calls.append(("include_archived", value, by_name(method, "u1", include_archived=value)))
        for value in [*NOT_INTEGERS, 0, 1001]:
            calls.append(("limit", value, by_name(method, "u1", limit=value)))
    add(
        "cursor",
        [5, ["c"], b"c", "garbage!", "W1td", base64.urlsafe_b64encode(b"[" * 100_000).decode()],
        lambda v: lambda st, s: st.list_user_sessions_page("u1", cursor=v),
    )
    add(
        "retention_days",
        [*BAD_OPTIONAL_NUMBERS, -1, 10**6],
        lambda v: lambda st, s: st.delete_old_archived_sessions(retention_days=v),
    )
    return calls


CALLS = _calls()


async def test_every_bad_argument_is_refused_by_name(store: SessionStore) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1", tags=["t"])
    await store.update_state(session.id, context={"k": "kept"})
    archived = await store.create_session(["OLD"], "equity", user_id="u1")
    await store.archive_session(archived.id)
    unexpected = []
    for field, value, call in CALLS:
        before = (await snapshot(store, session), await store.list_user_sessions("u1", True))
        try:
            await call(store, session)
        except InvalidInputError as refused:
            if field not in refused.field:
                unexpected.append((field, value, f"named {refused.field!r}"))
        except FimlError as other:
            unexpected.append((field, value, f"{type(other).__name__}: {other}"))
        except Exception as untyped:  # the defect under test
            unexpected.append((field, value, f"untyped {type(untyped).__name__}: {untyped}"))
        else:
            unexpected.append((field, value, "accepted"))
        after = (await snapshot(store, session), await store.list_user_sessions("u1", True))
        assert after == before, (field, value)

    assert unexpected == [], "\n".join(map(repr, unexpected))


@pytest.mark.parametrize("limit", [0, 3, 2**31 - 1])
async def test_history_limits_in_range_are_served(store: SessionStore, limit: int) -> None:
    session = await store.create_session(["AAPL"], "equity", user_id="u1")
    loaded = await store.get_session(session.id, history_limit=limit)
    assert loaded is not None and loaded.id == session.id


@pytest.mark.parametrize("bad_clock", [None, 42, "now", datetime(2024, 1, 1, tzinfo=UTC)])
def test_a_clock_that_is_no_function_is_refused_by_name(bad_clock: Any) -> None:
    with pytest.raises(InvalidInputError) as refused:
        SessionStore(clock=bad_clock)
    assert refused.value.field == "clock"


@pytest.mark.parametrize("reading", [datetime(2024, 1, 1), "2024-01-01T00:00:00+00:00", None])
async def test_a_clock_telling_no_aware_time_is_refused_by_name_and_writes_nothing(
    settings: Settings, reading: Any
) -> None:
    async with SessionStore(settings, clock=lambda: reading) as store:
        with pytest.raises(InvalidInputError) as refused:
            await store.create_session(["AAPL"], "equity", user_id="u1")
        assert refused.value.field == "clock"
    async with SessionStore(settings) as honest:
        assert await honest.list_user_sessions("u1") == []
