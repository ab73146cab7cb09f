"""How long the ``fiml`` command takes to start, against the interpreter's own start.

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --before ../checkout-of-main --samples 9

Times, from spawn to exit, ``fiml --help`` and ``fiml sessions list`` (on a SQLite file in
a temporary data directory, created before the timed runs), and ``fiml serve`` over stdio
from spawn to its answer to the ``initialize`` request, sent on its stdin at once, with the
server's CPU time to that answer (read from ``/proc``). The floor is ``python -c pass``
with the same interpreter. Reference rows show what no change of ours can remove:
``--help`` of a typer app of two commands (typer and rich format every help page), the
imports ``fiml sessions list`` cannot do without on SQLite (SQLAlchemy's asyncio extension
and aiosqlite), the same with SQLAlchemy's PostgreSQL dialect (which FIML no longer loads
on SQLite), Alembic (which the schema check no longer imports on a start at head), the MCP
SDK's package alone (``import mcp``, which imports the SDK's client and the types of every
protocol version) and its server module, and a bare ``MCPServer`` with no tool served over
stdio to its ``initialize`` answer: the floor of ``fiml serve``.

Bytecode is cached as an installed package has it: every process, of both checkouts and
the reference rows, reads and writes its ``.pyc`` files in a temporary cache directory
(``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE`` is dropped from the environment), filled
by the warm-up run, so no sample compiles source and no checkout gets ``__pycache__``
directories.

With ``--before DIR`` (a checkout of the code to compare with, e.g. the main branch), every
command also runs from that checkout. Each sample runs every command once, in a new random
order, so all of them share the machine's load alike; figures are medians of the wall
time, each also as a ratio to the floor's median, and the median CPU time (user + system)
of the process, to its exit, which a machine shared with other work inflates less. Every
command runs in its checkout's directory, which ``python -m`` puts first on the path.
Results replace the ``startup`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import table, write_section

HERE = Path(__file__).resolve().parent.parent
INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench_startup", "version": "0"},
        },
    }
)
FLOOR = "python -c pass"
LIBRARIES = "import sqlalchemy.ext.asyncio, aiosqlite"
POSTGRESQL_DIALECT = f"{LIBRARIES}, sqlalchemy.dialects.postgresql"
ALEMBIC = "import alembic.command"
SDK_PACKAGE = "import mcp"
SDK = "import mcp.server.mcpserver"
BARE_SERVER = (
    "from mcp.server.mcpserver import MCPServer; import anyio; "
    "anyio.run(MCPServer('bare').run_stdio_async)"
)
BARE_TYPER = (
    "import typer; app = typer.Typer(); app.command()(lambda: None); "
    "app.command('other')(lambda: None); app()"
)


def _cached_bytecode_env(pycache: Path) -> dict[str, str]:
    """The caller's environment, with bytecode read from and written to ``pycache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


@dataclass(frozen=True)
class Checkout:
    """One copy of the code to start, with a data directory of its own."""

    label: str
    source: Path
    data_home: Path
    pycache: Path

    @property
    def cwd(self) -> Path:
        return self.source

    def env(self) -> dict[str, str]:
        # No FIML_* settings from the caller: the default SQLite in the data directory.
        env = {
            k: v for k, v in _cached_bytecode_env(self.pycache).items() if not k.startswith("FIML_")
        }
        env.update(PYTHONPATH=str(self.source), XDG_DATA_HOME=str(self.data_home))
        return env


@dataclass(frozen=True)
class Sample:
    """One start: wall seconds to the figure timed, CPU seconds of the process to its exit."""

    wall: float
    cpu: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], pycache: Path, checkout: Checkout | None = None) -> Sample:
    """Spawn to exit of ``argv``, which must succeed."""
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(
        argv,
        env=_cached_bytecode_env(pycache) if checkout is None else checkout.env(),
        cwd=None if checkout is None else checkout.cwd,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return Sample(time.perf_counter() - start, _children_cpu() - cpu)


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _to_initialize(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Sample:
    """Spawn of a stdio MCP server to its answer to ``initialize``; CPU to that answer."""
    start = time.perf_counter()
    server = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(INITIALIZE + "\n")
    server.stdin.flush()
    reply = server.stdout.readline()
    elapsed = time.perf_counter() - start
    cpu = _cpu_of(server.pid)
    server.stdin.close()  # end of input: the server stops
    server.wait(timeout=30)
    if '"result"' not in reply:
        raise RuntimeError(f"{argv} did not initialize: {reply!r}")
    return Sample(elapsed, cpu)


def _serve_to_initialize(checkout: Checkout) -> Sample:
    """Spawn of ``fiml serve`` (stdio) to its answer to ``initialize``."""
    argv = [sys.executable, "-m", "fiml.cli", "serve", "--offline", "--no-jobs"]
    return _to_initialize(argv, checkout.env(), checkout.cwd)


def _commands(checkout: Checkout) -> dict[str, Callable[[], Sample]]:
    cli = [sys.executable, "-m", "fiml.cli"]
    pycache = checkout.pycache
    return {
        f"fiml --help ({checkout.label})": lambda: _run([*cli, "--help"], pycache, checkout),
        f"fiml sessions list ({checkout.label})": lambda: _run(
            [*cli, "sessions", "list"], pycache, checkout
        ),
        f"fiml serve to initialize ({checkout.label})": lambda: _serve_to_initialize(checkout),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # One bytecode cache: it mirrors each source's absolute path, so checkouts never collide.
        pycache = Path(tmp, "pycache")
        checkouts = [Checkout("after", HERE, Path(tmp, "after"), pycache)]
        if args.before is not None:
            before = Checkout("before", args.before.resolve(), Path(tmp, "before"), pycache)
            checkouts.insert(0, before)
        runs: dict[str, Callable[[], Sample]] = {
            FLOOR: lambda: _run([sys.executable, "-c", "pass"], pycache),
            "typer app of two commands, --help": lambda: _run(
                [sys.executable, "-c", BARE_TYPER, "--help"], pycache
            ),
            f"python -c '{LIBRARIES}'": lambda: _run([sys.executable, "-c", LIBRARIES], pycache),
            f"python -c '{POSTGRESQL_DIALECT}'": lambda: _run(
                [sys.executable, "-c", POSTGRESQL_DIALECT], pycache
            ),
            f"python -c '{ALEMBIC}'": lambda: _run([sys.executable, "-c", ALEMBIC], pycache),
            f"python -c '{SDK_PACKAGE}'": lambda: _run(
                [sys.executable, "-c", SDK_PACKAGE], pycache
            ),
            f"python -c '{SDK}'": lambda: _run([sys.executable, "-c", SDK], pycache),
            "bare MCPServer (stdio) to initialize": lambda: _to_initialize(
                [sys.executable, "-c", BARE_SERVER], _cached_bytecode_env(pycache)
            ),
        }
        for checkout in checkouts:
            runs.update(_commands(checkout))
        for run in runs.values():  # creates the SQLite files and warms the file cache
            run()
        samples: dict[str, list[Sample]] = {name: [] for name in runs}
        for _ in range(args.samples):
            names = list(runs)
            random.shuffle(names)
            for name in names:
                samples[name].append(runs[name]())
    wall = {name: sorted(s.wall * 1000 for s in runs_) for name, runs_ in samples.items()}
    floor = statistics.median(wall[FLOOR])
    rows = [
        [
            name,
            f"{statistics.median(wall[name]):.0f}",
            f"{wall[name][0]:.0f}-{wall[name][-1]:.0f}",
            f"{statistics.median(wall[name]) / floor:.1f}x",
            f"{statistics.median(s.cpu * 1000 for s in samples[name]):.0f}",
        ]
        for name in runs
    ]
    body = (
        f"{args.samples} samples of each, interleaved in random order: wall time from spawn "
        f"(median and range, ms), its ratio to the floor's median (`{FLOOR}`), and the "
        "process's CPU time (median, ms) to its exit, or for the stdio servers to their "
        "`initialize` reply. `serve` is stdio, `--offline --no-jobs`, timed to the "
        "`initialize` reply; the bare MCPServer is the SDK's server with no tool, the "
        "floor of any server built on the SDK.\n\n"
        + table(rows, ["command", "wall ms", "range ms", "x floor", "CPU ms"])
    )
    print(body)
    write_section("startup", "Start-up of the fiml command (issue 15)", body)


if __name__ == "__main__":
    main()
