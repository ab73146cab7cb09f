"""A real Redis Cluster for the tests: 3 masters and 3 replicas on loopback ports.

:class:`LocalCluster` starts six ``redis-server --cluster-enabled yes`` processes (no
persistence, in a temporary directory), joins them with ``redis-cli --cluster create
--cluster-replicas 1``, and stops them by the PIDs it started. :func:`cluster_url` gives
the URL of the cluster the tests share: ``FIML_TEST_REDIS_CLUSTER_URL`` when set, else one
started on first use (ports from ``FIML_TEST_REDIS_CLUSTER_PORT``, 7100 by default) and
stopped when the test run ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["LocalCluster", "cluster_tools_missing", "cluster_url"]

NODES = 6
_READY_SECONDS = 30.0


def cluster_tools_missing() -> str | None:
    """Why no cluster can be started here, or None."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


def _cli(port: int, *args: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout


class LocalCluster:
    """Six Redis nodes on ``base_port`` .. ``base_port + 5``, made one cluster."""

    def __init__(self, base_port: int) -> None:
        self.ports = [base_port + i for i in range(NODES)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.directory = Path(tempfile.mkdtemp(prefix="fiml-test-cluster-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        for port in self.ports:
            self.start_node(port)
        for port in self.ports:
            self._wait(lambda p=port: _cli(p, "PING").strip() == "PONG", f"node {port}")
        create = [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]
        subprocess.run(create, capture_output=True, check=True, timeout=60)
        for port in self.ports:
            self._wait(lambda p=port: "cluster_state:ok" in _cli(p, "CLUSTER", "INFO"), "cluster")
        self._wait(self._replicas_in_sync, "replicas")
        return self

    def start_node(self, port: int) -> None:
        """Start (or restart) one node, with its cluster state file kept across restarts."""
        node_dir = self.directory / str(port)
        node_dir.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
                "--logfile",
                str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def masters(self) -> list[int]:
        """The ports of the nodes that are masters now."""
        return [
            port for port in self.live_ports() if "role:master" in _cli(port, "INFO", "replication")
        ]

    def live_ports(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def replica_of(self, master: int) -> int:
        """The port of a master's replica."""
        for port in self.live_ports():
            info = _cli(port, "INFO", "replication")
            if "role:slave" in info and f"master_port:{master}" in info:
                return port
        raise LookupError(f"no replica of {master}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (by the PID this helper started)."""
        process = self.processes[port]
        process.kill()
        process.wait(10)

    def pause(self, port: int) -> None:
        """SIGSTOP one node: its links stay open, it answers nothing (a cut link)."""
        os.kill(self.processes[port].pid, signal.SIGSTOP)

    def drop_replicas(self, master: int) -> None:
        """Have a master close its replication links (a paused replica cannot reconnect)."""
        _cli(master, "CLIENT", "KILL", "TYPE", "replica")

    def resume(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGCONT)

    def wait_for_master(self, port: int) -> None:
        """Wait until ``port`` is a master and the cluster is whole again."""
        self._wait(lambda: "role:master" in _cli(port, "INFO", "replication"), f"{port} promoted")
        self._wait(lambda: "cluster_state:ok" in _cli(port, "CLUSTER", "INFO"), "cluster ok")

    def _replicas_in_sync(self) -> bool:
        masters = self.masters()
        return len(masters) == NODES // 2 and all(  # online: the first sync is done
            "state=online" in _cli(port, "INFO", "replication") for port in masters
        )

    @staticmethod
    def _wait(check: object, what: str) -> None:
        assert callable(check)
        deadline = time.monotonic() + _READY_SECONDS
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test Redis Cluster did not come up: {what}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node this helper started, by its PID, and remove their files."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


_shared: list[str] = []


def cluster_url() -> str:
    """The URL of the cluster the tests share (see the module docstring)."""
    given = os.environ.get("FIML_TEST_REDIS_CLUSTER_URL")
    if given:
        return given
    if not _shared:
        cluster = LocalCluster(int(os.environ.get("FIML_TEST_REDIS_CLUSTER_PORT", "7100")))
        atexit.register(cluster.stop)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _shared.append(cluster.url)
    return _shared[0]
