"""SQL only with bound parameters: no query text is ever built from values.

Statically, every call that takes SQL (or Lua) text in the ``fiml`` package is given a
constant; behaviourally, ids, symbols, tags, keys and values full of SQL metacharacters
round-trip unchanged on every deployment and match nothing but themselves.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest

import fiml
from fiml.core.errors import InvalidCursorError, InvalidSessionIdError
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.jobs import run_cleanup
from fiml.sessions.models import QueryRecord, utcnow
from fiml.sessions.store import ALL_QUERIES, SessionStore

TEXT_SINKS = {"text", "literal_column", "exec_driver_sql", "executescript", "LuaScript"}
"""Calls whose first argument is SQL or Lua text: it must be a constant."""
STATEMENT_SINKS = {"execute", "executemany", "fetch", "fetchrow", "fetchval"}
"""Calls that take a statement object or text: text must not be built from values."""


@dataclass(frozen=True)
class Finding:
    """A call that builds query text from something other than constants."""

    path: str
    line: int
    call: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.call}(...) is given text built at run time"


def _constants(tree: ast.Module) -> set[str]:
    """Module-level names bound to constant text (so ``HELPERS + "..."`` stays constant)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _is_constant(node.value, names):
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _is_constant(node: ast.expr, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_constant(node.left, constants) and _is_constant(node.right, constants)
    if isinstance(node, ast.IfExp):
        return _is_constant(node.body, constants) and _is_constant(node.orelse, constants)
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) for v in node.values)
    return False


def _builds_text(node: ast.expr) -> bool:
    """f-strings with fields, ``%`` or ``+`` on text, ``.format(...)``, ``.join(...)``."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        sides = (node.left, node.right)
        return any(
            (isinstance(s, ast.Constant) and isinstance(s.value, str)) or _builds_text(s)
            for s in sides
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in {"format", "join"}
    return False


def _name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def scan(source: str, path: str = "<source>") -> list[Finding]:
    """Every call in ``source`` that gives a query sink text built at run time."""
    tree = ast.parse(source)
    constants = _constants(tree)
    findings = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name, first = _name(node), node.args[0]
        bad = (name in TEXT_SINKS and not _is_constant(first, constants)) or (
            name in STATEMENT_SINKS and _builds_text(first)
        )
        if bad and name is not None:
            findings.append(Finding(path, node.lineno, name))
    return findings


PACKAGE = Path(fiml.__file__).parent


def test_the_package_builds_no_query_text_from_values() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 30 and any("migrations" in str(p) for p in sources)

    findings = [
        finding
        for source in sources
        for finding in scan(source.read_text(encoding="utf-8"), str(source.relative_to(PACKAGE)))
    ]

    assert findings == [], "\n".join(map(str, findings))


def test_the_scan_finds_text_built_at_run_time() -> None:
    unsafe = """
HELPERS = "local x = 1"
text(f"SELECT * FROM sessions WHERE user_id = '{user}'")
conn.exec_driver_sql("DELETE FROM sessions WHERE id = '%s'" % sid)
cursor.execute("SELECT * FROM sessions WHERE user_id = '" + user + "'")
conn.execute("SELECT * FROM {}".format(table))
sa.text(query)
op.execute(f"DROP TABLE {table}")
LuaScript(HELPERS + f"return '{key}'")
literal_column(column_name)
await pg.fetchval("SELECT 1 WHERE x = " + value)
"""
    safe = """
HELPERS = "local x = 1"
text("SELECT pg_advisory_xact_lock(:key)")
conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
cursor.execute("PRAGMA journal_mode=WAL")
conn.execute(select(S).where(S.c.user_id == user))
conn.execute(text("SELECT :k"), {"k": value})
LuaScript(HELPERS + "return 1")
await pg.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
"""

    assert [f.line for f in scan(unsafe)] == list(range(3, 12))
    assert scan(safe) == []


HOSTILE = [
    "' OR 1=1 --",
    '"; DROP TABLE sessions; --',
    "alice'); DELETE FROM session_queries; --",
    "%",
    "_",
    "*",
    "\\",
    "{alice}",
    "alice:sessions",
    "fiml:expiry",
]
"""User ids, tags, keys and values that mean something to SQL, LIKE, Redis globs or keys."""


@pytest.fixture
async def populated(store: SessionStore) -> dict[str, str]:
    """One session per hostile user id, plus alice's, each full of hostile text."""
    made = {}
    for user in [*HOSTILE, "alice"]:
        session = await store.create_session(
            assets=["AAPL", "' OR 1=1", "X;DROP"],
            session_type="equity",
            user_id=user,
            tags=['"; DROP TABLE sessions; --', "%", "tag"],
        )
        await store.update_state(
            session.id,
            context={key: f"value {key}" for key in HOSTILE},
            preferences={"' OR '1'='1": ["' OR 1=1 --", {"nested": '"; --'}]},
        )
        await store.append_query(
            session.id,
            QueryRecord(
                query_type="'; DROP TABLE session_queries; --",
                parameters={"symbol": "' OR 1=1 --", "%": "_"},
                result_summary='"; DELETE FROM sessions; --',
            ),
        )
        made[user] = str(session.id)
    return made


async def test_hostile_text_round_trips_and_matches_only_itself(
    store: SessionStore, populated: dict[str, str]
) -> None:
    for user, sid in populated.items():
        session = await store.get_session(sid, history_limit=ALL_QUERIES)

        assert session is not None and session.user_id == user
        assert session.assets == ["AAPL", "' OR 1=1", "X;DROP"]
        assert session.tags == ['"; DROP TABLE sessions; --', "%", "tag"]
        assert session.state.context == {key: f"value {key}" for key in HOSTILE}
        assert session.state.preferences == {"' OR '1'='1": ["' OR 1=1 --", {"nested": '"; --'}]}
        [query] = session.state.history.queries
        assert query.query_type == "'; DROP TABLE session_queries; --"
        assert query.parameters == {"symbol": "' OR 1=1 --", "%": "_"}
        assert query.result_summary == '"; DELETE FROM sessions; --'

        page = await store.list_user_sessions_page(user, include_archived=True, limit=1000)
        active = await store.backend.count_active(now=utcnow(), user_id=user)
        assert [str(s.id) for s in page.sessions] == [sid], f"{user!r} matched others"
        assert active == 1, f"{user!r} counted others"


async def test_hostile_user_ids_match_only_themselves_in_analytics(
    store: SessionStore, populated: dict[str, str]
) -> None:
    for sid in populated.values():
        await store.close_session(sid)
    await run_cleanup(store)
    analytics = SessionAnalytics(store)

    for user in populated:
        stats = await analytics.get_session_stats(user_id=user)
        exported = await analytics.export_session_metrics("json", user_id=user)

        assert (stats["total_sessions"], stats["total_queries"]) == (1, 1), user
        assert f'"session_id": "{populated[user]}"' in exported
        assert exported.count('"session_id"') == 1
    everyone = await analytics.get_session_stats()
    assert everyone["total_sessions"] == len(populated)


async def test_hostile_session_ids_and_cursors_are_refused_before_any_query(
    store: SessionStore, populated: dict[str, str]
) -> None:
    for hostile in ["' OR 1=1 --", '"; DROP TABLE sessions; --', f"{uuid4()}' OR '1'='1"]:
        with pytest.raises(InvalidSessionIdError):
            await store.get_session(hostile)
        with pytest.raises(InvalidSessionIdError):
            await store.update_state(hostile, context={"k": 1})
        with pytest.raises(InvalidCursorError):
            await store.list_user_sessions_page("alice", cursor=hostile)

    for sid in populated.values():
        assert await store.get_session(sid) is not None
