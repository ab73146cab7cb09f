"""Hypothesis strategies for hostile tool arguments.

Values are what the SDK's client can put on the wire: any JSON value, text in every
script and with control, bidirectional, zero-width and NUL characters, lone surrogates
(inside values; the client cannot encode them in object keys), 1 MB strings, integers far
past 64 bits, NaN and infinities (the client sends them as null), lists of 100,000
items and nesting up to 240 levels (the client's own serializer stops near 250; deeper
nesting is sent as raw JSON by ``test_wire.py``).

Session ids are drawn as :class:`Ref` placeholders too, which the test swaps for real ids
of the harness's sessions (own, foreign, closed, expired, archived, unknown, fresh).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fiml.sessions.models import SessionType

EXAMPLES = int(os.environ.get("FIML_FUZZ_EXAMPLES", "60"))
"""Examples per tool; CI keeps the default, longer runs raise it."""

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
"""Deterministic runs (the same examples every time, nothing saved between runs)."""

TOOLS = [
    "create-analysis-session",
    "get-session-info",
    "list-sessions",
    "search-sessions",
    "extend-session",
    "close-analysis-session",
    "get-session-history",
    "update-session-context",
    "search-by-symbol",
    "search-by-coin",
    "get-session-analytics",
    "share-session",
    "unshare-session",
    "list-shared-sessions",
    "save-session-template",
    "list-session-templates",
    "get-session-timeline",
    "fork-session",
]
"""Every tool the server lists; ``test_every_tool_is_fuzzed`` keeps this complete."""

REFS = ("own", "fresh", "foreign", "closed", "expired", "archived", "unknown")


@dataclass(frozen=True)
class Ref:
    """A session of the harness, named; replaced by its id before the call."""

    name: str


TRICKY_TEXT = [
    "",
    " ",
    "\x00",
    "AAPL\x00",
    "\u202eLPAA",
    "\u200bAAPL",
    "\ufeffBTC",
    "A\u200dB",
    "مرحبا",
    "שלום\u200f",
    "😀🚀",
    "e\u0301",
    "Ⅻ",
    "\r\n",
    "\t",
    "\\",
    '"',
    "' OR 1=1 --",
    '"; DROP TABLE sessions; --',
    "../../etc/passwd",
    "%s%s%n",
    "{0}{session_id}",
    "${jndi:ldap://x}",
    "null",
    "NaN",
    "-1",
    "1e309",
    "session://x",
    "00000000-0000-0000-0000-000000000000",
    "urn:uuid:00000000-0000-4000-8000-000000000000",
    "{00000000-0000-4000-8000-000000000000}",
    "equity",
    " Crypto ",
    "AAPL",
    "btc/usdt",
    "BRK-B",
    "VOD.L",
]
SESSION_TYPES = [t.value for t in SessionType]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each drawn in proportion to its weight.

    (``st.one_of`` flattens nested ``one_of``s, so a branch that is itself a union of five
    would otherwise be drawn five times as often as it looks.)
    """
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
huge_text = st.sampled_from(["x", "é", "😀", "\x00", "\u202e", "A"]).flatmap(
    lambda c: st.sampled_from([1_000, 70_000, 1_000_000 // len(c.encode())]).map(lambda n: c * n)
)
key_text = weighted(
    (4, st.text(min_size=1, max_size=20)),
    (1, st.sampled_from(TRICKY_TEXT)),
    (1, st.sampled_from(["k" * 128, "k" * 129])),
)
text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(TRICKY_TEXT),
    st.text(st.characters(codec="utf-8"), max_size=10).map(lambda s: s + "\u202e\u200b\x00"),
    surrogates,
    huge_text,
)
huge_ints = st.sampled_from(
    [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40, -(10**40), 10**4299]
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 0.0, -0.0, 1e-300, 5e-324, 1e308, -1e308, 1.5, 168, 168.0001, 1000]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)


def nested(depth: int, kind: str) -> Any:
    """``depth`` levels of lists or objects around a string."""
    value: Any = "core"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


deep = st.tuples(
    st.one_of(st.integers(1, 40), st.sampled_from([99, 100, 101, 150, 240])),
    st.sampled_from(["list", "dict"]),
).map(lambda spec: nested(*spec))
huge_lists: st.SearchStrategy[list[object]] = st.tuples(
    st.sampled_from([51, 1_000, 100_000]), st.sampled_from(["AAPL", 1, None, []])
).map(lambda spec: [spec[1]] * spec[0])
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(key_text, children, max_size=4)
    ),
    max_leaves=10,
)
anything = st.one_of(json_values, deep, huge_lists, st.just([]), st.just({}))
"""Any value the client can send: the wrong type for nearly every argument."""

refs = st.sampled_from(REFS).map(Ref)
spelled_refs = st.sampled_from(REFS).map(lambda name: Ref(name + ":variant"))
writable = st.sampled_from(["own", "fresh"]).map(Ref)
typed_session_ids = weighted(
    (4, writable), (2, refs), (1, spelled_refs), (1, st.uuids().map(str)), (1, text)
)
numbers_typed = st.one_of(numbers, st.integers(-3, 200), st.floats(-10, 200))
plausible_labels = st.sampled_from(["AAPL", "msft", " tech ", "A" * 64, "A" * 65, "BTC"])
labels = weighted(
    (2, st.lists(plausible_labels, min_size=1, max_size=3)),
    (1, st.lists(weighted((1, plausible_labels), (1, text)), max_size=60)),
)
symbols = weighted(
    (2, st.sampled_from(["AAPL", "msft", "BRK-B", "VOD.L", "^GSPC", "BTC", "ETH/USDT", "X" * 21])),
    (1, st.text(alphabet="ABCXYZ019.^=-/ ", min_size=1, max_size=22)),
    (1, text),
)
small_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(key_text, children, max_size=3)
    ),
    max_leaves=6,
)
readers = st.one_of(st.sampled_from(["bob", "alice", "root", "", "x" * 256]), text)
"""Who a session is shared with: another user, the caller, empty, too long, anything."""
states = weighted(
    (2, st.dictionaries(key_text, small_values, min_size=1, max_size=4)),
    (1, st.dictionaries(key_text, anything, max_size=5)),
)

TYPED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "create-analysis-session": {
        "assets": labels,
        "session_type": weighted((3, st.sampled_from(SESSION_TYPES)), (1, text)),
        "ttl_hours": numbers_typed,
        "tags": labels,
        "template": st.one_of(st.sampled_from(["watch", "Watch", " watch", "x" * 65]), text),
    },
    "get-session-info": {"session_id": typed_session_ids},
    "list-sessions": {
        "include_archived": st.booleans(),
        "limit": st.one_of(st.integers(-5, 1005), huge_ints),
        "cursor": text,
    },
    "search-sessions": {
        "asset": st.one_of(symbols, text),
        "tag": text,
        "session_type": st.one_of(st.sampled_from(SESSION_TYPES), text),
        "text": text,
        "since": st.one_of(st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01"]), text),
        "until": text,
        "include_archived": st.booleans(),
        "limit": st.one_of(st.integers(-5, 1005), huge_ints),
        "cursor": text,
    },
    "extend-session": {"session_id": typed_session_ids, "hours": numbers_typed},
    "close-analysis-session": {"session_id": typed_session_ids},
    "get-session-history": {
        "session_id": typed_session_ids,
        "offset": st.one_of(st.integers(-5, 2**62), huge_ints),
        "limit": st.one_of(st.integers(-5, 1005), huge_ints),
    },
    "update-session-context": {
        "session_id": typed_session_ids,
        "context": states,
        "preferences": states,
        "remove_context": st.lists(key_text, max_size=4),
    },
    "search-by-symbol": {
        "symbol": symbols,
        "market": st.one_of(st.sampled_from(["L", "TO", "l", "XX" * 6]), text),
        "session_id": typed_session_ids,
    },
    "search-by-coin": {
        "symbol": symbols,
        "pair": st.one_of(st.sampled_from(["USDT", "EUR", "BTC", "usdt"]), text),
        "session_id": typed_session_ids,
    },
    "get-session-timeline": {
        "session_id": typed_session_ids,
        "limit": st.one_of(st.integers(-5, 1005), huge_ints),
        "cursor": text,
    },
    "fork-session": {
        "session_id": typed_session_ids,
        "after_queries": st.one_of(st.integers(-5, 5), huge_ints),
        "at": st.one_of(
            st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat()),
            st.sampled_from(["2026-12-01T10:00:00", "2026-12-01T10:00:00Z", "now"]),
            text,
        ),
    },
    "get-session-analytics": {
        "session_type": st.one_of(st.sampled_from(SESSION_TYPES), text),
        "days": numbers_typed,
        "user_id": st.one_of(st.sampled_from(["alice", "bob", "root", "x" * 256]), text),
        "all_users": st.booleans(),
    },
    "share-session": {"session_id": typed_session_ids, "user_id": readers},
    "unshare-session": {"session_id": typed_session_ids, "user_id": readers},
    "list-shared-sessions": {
        "limit": st.one_of(st.integers(-5, 1005), huge_ints),
        "cursor": text,
    },
    "save-session-template": {
        "name": st.one_of(st.sampled_from(["watch", "Watch", " watch", "x" * 65]), text),
        "assets": labels,
        "session_type": weighted((3, st.sampled_from(SESSION_TYPES)), (1, text)),
        "tags": labels,
        "ttl_hours": numbers_typed,
        "preferences": states,
    },
    "list-session-templates": {
        "limit": st.one_of(st.integers(-5, 1005), huge_ints),
        "cursor": text,
    },
}
"""For each tool, a strategy per argument, of the type its schema asks for."""

REQUIRED = {
    "create-analysis-session": {"assets", "session_type"},
    "get-session-info": {"session_id"},
    "extend-session": {"session_id", "hours"},
    "close-analysis-session": {"session_id"},
    "get-session-history": {"session_id"},
    "update-session-context": {"session_id", "context"},
    "search-by-symbol": {"symbol"},
    "search-by-coin": {"symbol"},
    "share-session": {"session_id", "user_id"},
    "unshare-session": {"session_id", "user_id"},
    "save-session-template": {"name", "assets", "session_type"},
    "get-session-timeline": {"session_id"},
    "fork-session": {"session_id"},
}
EXTRA_ARGUMENTS = {
    "user_id": st.sampled_from(["bob", "root"]),
    "role": st.just("admin"),
    "unexpected": anything,
}


def _typed(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """Required arguments present and every argument of its type, the values hostile."""
    known = TYPED[tool]
    required = {k: v for k, v in known.items() if k in REQUIRED.get(tool, set())}
    optional = {k: v for k, v in known.items() if k not in required}
    return st.fixed_dictionaries(required, optional=optional)


def _wild(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """Each argument present or missing, of its type or of any other, plus extra ones."""
    optional = {name: st.one_of(typed, anything) for name, typed in TYPED[tool].items()}
    extras = {k: v for k, v in EXTRA_ARGUMENTS.items() if k not in optional}
    return st.fixed_dictionaries({}, optional={**optional, **extras})


def arguments_for(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for ``tool``: well-typed but hostile three times in four, else anything."""
    return weighted((3, _typed(tool)), (1, _wild(tool)))


resource_ids = st.one_of(
    refs,
    spelled_refs,
    st.uuids().map(str),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(TRICKY_TEXT),
    st.sampled_from(["x" * 70_000, "a/b", "%00", "%2F", "?q=1", "#frag"]),
)
