"""The demo as a user runs it: ``fiml demo`` and ``python examples/session_demo.py``."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from fiml.cli.demo import DEMO_USER, run_demo
from fiml.core.config import Settings
from fiml.sessions.models import SessionStatus
from fiml.sessions.store import ALL_QUERIES, SessionStore
from tests.cli.conftest import invoke
from tests.conftest import sqlite_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "session_demo.py"
FIML = Path(sys.executable).with_name("fiml")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _run(command: list[str], tmp_path: Path) -> str:
    """Run ``command`` on the embedded default in ``tmp_path``; its stdout, after exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIML_")}
    env["FIML_DATABASE_URL"] = sqlite_url(tmp_path)
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def _stat(output: str, label: str) -> int:
    found = re.search(rf"│ {re.escape(label)}\s+│ (\d+)", output)
    assert found, f"no {label!r} in the statistics"
    return int(found.group(1))


def _check_walkthrough(output: str) -> str:
    """Everything one run must show; returns the session id it created."""
    created = re.search(rf"Session created: ({UUID})", output)
    assert created, output
    queries = re.findall(r"^  query \d: .*$", output, flags=re.MULTILINE)
    assert len(queries) == 5
    assert all("[synthetic]" in line for line in queries)
    assert "SYNTHETIC prices" in output
    assert "Queries tracked: 5 (1 served from the cache)" in output
    assert "context.leader" in output and "context.preference" in output
    assert "The 3 most recent of 5 queries" in output
    assert "search_by_symbol 4, search_by_coin 1" in output
    assert "Extended by 1h 0m" in output
    assert "Session status: closed" in output
    assert "A further query is refused" in output
    assert "This session is now archived" in output
    return created.group(1)


def test_fiml_demo_walks_through_a_whole_session(tmp_path: Path) -> None:
    output = _run([sys.executable, "-m", "fiml.cli", "demo"], tmp_path)

    _check_walkthrough(output)
    assert "Cleanup archived 1 session(s) and recorded analytics facts for 1." in output
    assert _stat(output, "sessions") == 1
    assert _stat(output, "queries") == 5


def _run_in_process() -> str:
    """``fiml demo`` through Typer's runner, on the test's database (the root conftest's):
    what a second run does is the test; the process it runs in is the walkthrough test's."""
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.stderr
    return result.stdout


def test_the_demo_runs_again_on_the_same_database() -> None:
    first = _check_walkthrough(_run_in_process())

    output = _run_in_process()

    second = _check_walkthrough(output)
    assert second != first
    assert _stat(output, "sessions") == 2
    assert _stat(output, "queries") == 10


def test_the_installed_fiml_command_runs_the_demo(tmp_path: Path) -> None:
    assert FIML.exists(), f"{FIML} is missing; run: pip install -e ."

    output = _run([str(FIML), "demo", "--user", "carol"], tmp_path)

    _check_walkthrough(output)
    assert "user: carol" in output
    assert "Sessions of carol in the last day" in output


def test_examples_session_demo_runs_the_same_demo(tmp_path: Path) -> None:
    output = _run([sys.executable, str(EXAMPLE)], tmp_path)

    _check_walkthrough(output)
    assert _stat(output, "sessions") == 1


async def test_the_demo_leaves_its_session_archived_with_everything_it_tracked(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path))
    printed = io.StringIO()

    result = await run_demo(settings, console=Console(file=printed, width=100))

    async with SessionStore(settings) as store:
        session = await store.get_session(result.session_id, history_limit=ALL_QUERIES)
    assert session is not None
    assert session.user_id == DEMO_USER
    assert session.status is SessionStatus.ARCHIVED and session.closed_at is not None
    history = session.state.history
    assert (history.total_queries, history.cache_hits) == (5, 1)
    assert [q.parameters["symbol"] for q in history.queries] == [
        "AAPL",
        "GOOGL",
        "MSFT",
        "BTC",
        "AAPL",
    ]
    assert all(
        q.result_summary and q.result_summary.endswith("[synthetic]") for q in history.queries
    )
    assert session.state.context["preference"] == "detailed"
    assert session.state.context["leader"] in {"AAPL", "GOOGL", "MSFT"}
    assert set(session.state.intermediate_results["prices"]) == {"AAPL", "GOOGL", "MSFT", "BTC"}
    assert session.state.preferences == {"currency": "USD"}
    assert (result.total_queries, result.archived) == (5, True)
    assert result.stats["archived_sessions"] == 1
    assert str(result.session_id) in printed.getvalue()
