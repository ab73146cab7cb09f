"""Hypothesis over every public method of SessionAnalytics, on every deployment.

Each argument is drawn valid or hostile (None, bools, NaN, infinities, integers far past
64 bits, text with NUL and lone surrogates, bytes, containers, naive datetimes, objects).
Whatever the arguments, a call returns or raises a FimlError; an InvalidInputError names
one of the method's parameters, and a refused call changes nothing: neither the metric
tables nor the export directory. ``FIML_FUZZ_EXAMPLES`` sets the examples per method
(CI keeps the default; long runs raise it).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from fiml.core.errors import FimlError, InvalidInputError
from fiml.sessions.analytics import MAX_BATCH, MAX_DAYS, SessionAnalytics
from fiml.sessions.metrics import MA, MQ, MT, M
from fiml.sessions.models import Session, SessionType
from fiml.sessions.store import SessionStore
from tests.analytics.factories import finished_session
from tests.conftest import STORE_KINDS, settings_for, sql_archive
from tests.fuzz.strategies import FUZZ

T = TypeVar("T")

EDGES = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    10**400,
    -(10**400),
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    1e308,
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 300,
    "30",
    "equity\x00",
    b"json",
    [],
    {},
    ["alice"],
    datetime(2026, 1, 1),
    object(),
]
HOSTILE = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.datetimes(),
    st.sampled_from(list(SessionType)),
)
"""Values no argument should accept, or only some should."""


def valid_or_hostile(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, HOSTILE)


USERS = st.sampled_from([None, "alice", "bob", "nobody", "é" * 255, "x" * 255])
KINDS = st.sampled_from([None, *SessionType, "equity", " Crypto ", "MACRO"])
DAYS = st.one_of(
    st.sampled_from([1, 30, 0.5, MAX_DAYS, 1e-9]), st.floats(min_value=1e-6, max_value=MAX_DAYS)
)
FORMATS = st.sampled_from(["json", "csv", "xml", "JSON", " json"])
PATHS = st.one_of(
    st.none(),
    st.sampled_from(["out.json", "deep/m.csv", "../escape.csv", "/tmp/abs.csv", "sub", "~x"]),
    st.text(max_size=12),
)


@dataclass
class Arena:
    """A store with recorded and unrecorded finished sessions, and an export directory."""

    runner: asyncio.Runner
    store: SessionStore
    analytics: SessionAnalytics
    exports: Path
    sessions: list[Session]

    def run(self, call: Awaitable[T]) -> T:
        async def awaited() -> T:
            return await call

        return self.runner.run(awaited())

    def metrics(self) -> list[Any]:
        async def read() -> list[Any]:
            async with sql_archive(self.store).engine.connect() as conn:
                rows: list[Any] = []
                for table in (M, MA, MT, MQ):
                    rows.append(sorted(map(tuple, (await conn.execute(select(table))).all())))
                return rows

        return self.run(read())

    def files(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.exports)): p.read_bytes() if p.is_file() else b"/"
            for p in sorted(self.exports.rglob("*"))
        }


@contextmanager
def arena(kind: str, tmp_path: Path) -> Iterator[Arena]:
    with asyncio.Runner() as runner:
        store = SessionStore(runner.run(settings_for(kind, tmp_path)))
        runner.run(store.initialize())
        try:
            analytics = SessionAnalytics(store)
            sessions = [
                finished_session(
                    user=user,
                    kind=kind_,
                    assets=["AAPL", "BTC"][: n % 2 + 1],
                    created_ago=timedelta(hours=n + 2),
                    lasted=timedelta(minutes=n),
                    closed=n % 2 == 0,
                    queries={"price": (n, n // 2)},
                )
                for n, (user, kind_) in enumerate(
                    [("alice", SessionType.EQUITY), ("bob", SessionType.CRYPTO)] * 3
                )
            ]
            for session in sessions[:4]:
                runner.run(analytics.record_session_metrics(session))
            for session in sessions[4:]:
                runner.run(store.backend.insert(session))
            runner.run(store.cleanup_expired_sessions())
            exports = tmp_path / "exports"
            (exports / "sub").mkdir(parents=True)
            running = runner.run(store.create_session(["NVDA"], "equity", user_id="alice"))
            yield Arena(runner, store, analytics, exports, [*sessions, running])
        finally:
            runner.run(store.shutdown())


def calls(a: Arena) -> dict[str, tuple[Callable[..., Awaitable[Any]], st.SearchStrategy[Any]]]:
    """Each public method and a strategy of keyword arguments for it."""
    directories = st.sampled_from(
        [None, a.exports, str(a.exports), a.exports / "sub", "", "\x00", "~nobody_fiml/x", "rel"]
    )
    aware = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(year=2026))
    return {
        "get_session_stats": (
            a.analytics.get_session_stats,
            st.fixed_dictionaries(
                {},
                optional={
                    "user_id": valid_or_hostile(USERS),
                    "session_type": valid_or_hostile(KINDS),
                    "days": valid_or_hostile(DAYS),
                    "top": valid_or_hostile(st.integers(1, 100)),
                },
            ),
        ),
        "get_user_session_summary": (
            a.analytics.get_user_session_summary,
            st.fixed_dictionaries(
                {"user_id": valid_or_hostile(USERS)}, optional={"days": valid_or_hostile(DAYS)}
            ),
        ),
        "export_session_metrics": (
            a.analytics.export_session_metrics,
            st.fixed_dictionaries(
                {},
                optional={
                    "format": valid_or_hostile(FORMATS),
                    "user_id": valid_or_hostile(USERS),
                    "session_type": valid_or_hostile(KINDS),
                    "days": valid_or_hostile(DAYS),
                    "path": valid_or_hostile(PATHS),
                    "directory": valid_or_hostile(directories),
                },
            ),
        ),
        "record_session_metrics": (
            a.analytics.record_session_metrics,
            st.fixed_dictionaries({"session": valid_or_hostile(st.sampled_from(a.sessions))}),
        ),
        "record_archived_metrics": (
            a.analytics.record_archived_metrics,
            st.fixed_dictionaries(
                {},
                optional={
                    "archived_since": valid_or_hostile(st.one_of(aware, st.none())),
                    "batch_size": valid_or_hostile(st.integers(1, MAX_BATCH)),
                },
            ),
        ),
    }


WRITERS = {"record_session_metrics", "record_archived_metrics"}
METHODS = [
    "get_session_stats",
    "get_user_session_summary",
    "export_session_metrics",
    "record_session_metrics",
    "record_archived_metrics",
]


def check_call(a: Arena, name: str, kwargs: dict[str, Any]) -> None:
    """One call: a result or a FimlError; a refusal names a parameter and changes nothing."""
    method = calls(a)[name][0]
    parameters = set(inspect.signature(method).parameters)
    before, files = a.metrics(), a.files()
    try:
        a.run(method(**kwargs))
    except InvalidInputError as refused:
        assert refused.field in parameters, (refused.field, kwargs)
        assert (a.metrics(), a.files()) == (before, files)
    except FimlError:
        assert (a.metrics(), a.files()) == (before, files)
    else:
        if name not in WRITERS:
            assert a.metrics() == before


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("name", METHODS)
def test_any_arguments_give_a_result_or_a_fiml_error(kind: str, name: str, tmp_path: Path) -> None:
    with arena(kind, tmp_path) as a:

        @FUZZ
        @given(kwargs=calls(a)[name][1])
        def check(kwargs: dict[str, Any]) -> None:
            check_call(a, name, kwargs)

        check()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_every_edge_value_in_every_argument(kind: str, tmp_path: Path) -> None:
    """Each edge value in each argument in turn, the others valid: the sweep a short
    random run may not reach."""
    with arena(kind, tmp_path) as a:
        required: dict[str, dict[str, Any]] = {
            "get_user_session_summary": {"user_id": "alice"},
            "record_session_metrics": {"session": a.sessions[0]},
        }
        for name in METHODS:
            method = calls(a)[name][0]
            for parameter in inspect.signature(method).parameters:
                for edge in EDGES:
                    check_call(a, name, {**required.get(name, {}), parameter: edge})


def test_the_constructor_refuses_anything_but_a_store() -> None:
    for value in (None, "store", object(), 1):
        with pytest.raises(InvalidInputError) as refused:
            SessionAnalytics(value)  # type: ignore[arg-type]
        assert refused.value.field == "store"


def test_a_naive_datetime_is_refused_by_name(tmp_path: Path) -> None:
    with arena("sqlite", tmp_path) as a:
        with pytest.raises(InvalidInputError) as refused:
            a.run(a.analytics.record_archived_metrics(archived_since=datetime(2026, 1, 1)))
        assert refused.value.field == "archived_since"
