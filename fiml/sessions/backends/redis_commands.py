"""The command path of the Redis backend: every call it makes to Redis goes through here.

A call is one command, one script run (EVALSHA), or a pipeline of both, each bounded as a
whole by the backend's timeout; a Redis that cannot be reached or does not answer in time
is a :class:`~fiml.core.errors.StorageUnavailableError`, and a Redis that is up but
refuses writes (full to its ``maxmemory`` under ``noeviction``, or stopped writes after a
failed snapshot, MISCONF) a :class:`~fiml.core.errors.StorageRefusedError`. The scripts are
the ``lua/*.lua`` files of :mod:`~fiml.sessions.backends.redis_keys`, registered with the client
(``register_script``) by :class:`~fiml.sessions.backends.redis.RedisBackend`.

On a Redis Cluster (redis-py's ``RedisCluster``) the same calls work unchanged: redis-py
sends each command, and each command of a pipeline, to the master of its key's slot (a
script's by its KEYS, which share one hash tag). Two things differ: a node's connection
pool fails a call that finds it full instead of waiting, so calls queue here at
``redis_max_connections``; and scripts are loaded on every master.

With ``FIML_REDIS_WAIT_REPLICAS`` a durable write (:meth:`RedisCommands._pipeline` with
``durable=True``) is followed, on each connection that carried part of it, by
``WAIT replicas timeout``: Redis answers once that many replicas acknowledged everything
that connection wrote, so the write is acknowledged only once it would survive a failover.
One case it does not cover: a slot moved to another master by a live resharding while a
durable pipeline is under way, where redis-py resends the redirected command on the new
master but the WAIT has already been answered by the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fiml.core.errors import StorageRefusedError, StorageUnavailableError
from fiml.sessions.backends import redis_keys as rk

if TYPE_CHECKING:
    from fiml.core.redis_client import RedisClient

__all__ = ["Command", "RedisCommands"]

Command = tuple[Any, ...]
_FAULTS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    RedisClusterException,
    TryAgainError,
)
"""What redis-py raises when Redis cannot be reached or does not answer in time (a busy
loading Redis, a full pool: ConnectionError subclasses), and what a cluster raises while
a slot has no master (a failover under way: CLUSTERDOWN, TRYAGAIN, a slot not covered);
an error reply is none of these."""


_MISCONF = re.compile(r"""(?:Command # \d+ .* of pipeline caused error: \(?["']?)?MISCONF """, re.S)


def refused(exc: ResponseError) -> StorageRefusedError | None:
    """The refusal an error reply stands for, or None for any other error reply.

    redis-py raises OOM replies as OutOfMemoryError; MISCONF (writes stopped after a failed
    RDB snapshot) has no class of its own, so its reply's code is read (a pipeline's error
    carries it after redis-py's "of pipeline caused error: " prefix)."""
    if isinstance(exc, OutOfMemoryError):
        return StorageRefusedError("redis", "out of memory (maxmemory reached, nothing evicted)")
    if _MISCONF.match(str(exc)):
        return StorageRefusedError("redis", "writes stopped: its last snapshot failed (MISCONF)")
    return None


class RedisCommands:
    """Calls to Redis for a backend that sets the client, the timeout and the scripts."""

    redis: RedisClient
    keys: rk.RedisKeyspace
    _timeout: float
    _gate: asyncio.Semaphore | None
    """On a cluster: at most ``redis_max_connections`` calls at a time (see above)."""
    _wait_replicas: int
    _wait_milliseconds: int
    _create: AsyncScript
    _apply: AsyncScript
    _read: AsyncScript
    _freezing_read: AsyncScript
    _remove: AsyncScript

    async def _load_scripts(self) -> None:
        """Load every script ahead of its first call, which then needs no NOSCRIPT round
        trip (each :class:`~redis.commands.core.AsyncScript` loads itself again after one)."""
        scripts = (self._create, self._apply, self._read, self._freezing_read, self._remove)
        if isinstance(self.redis, RedisCluster):  # one command per script, sent to every master
            for script in scripts:
                await self._call("SCRIPT LOAD", script.script)
            return
        await self._pipeline([("SCRIPT LOAD", script.script) for script in scripts])

    def _turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A place in the queue of calls (on a cluster), or nothing to wait for."""
        return self._gate if self._gate is not None else contextlib.nullcontext()

    def _unavailable(self, exc: Exception) -> StorageUnavailableError:
        if isinstance(exc, RedisTimeoutError | TimeoutError):
            return StorageUnavailableError("redis", f"no reply within {self._timeout:g} s")
        return StorageUnavailableError("redis", str(exc) or type(exc).__name__)

    async def _call(self, *command: Any) -> Any:
        """One command, its reply (an error reply is raised).

        Each call to Redis, here and below, is bounded as a whole by the timeout: past it,
        the call is cancelled inside redis-py, which drops the connection it was using, so
        the late reply reaches no one."""
        try:
            async with self._turn(), asyncio.timeout(self._timeout):
                return await self.redis.execute_command(*command)
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        except ResponseError as exc:
            refusal = refused(exc)
            if refusal is None:
                raise
            raise refusal from exc

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call, by EVALSHA (the script loads itself again after a NOSCRIPT)."""
        try:
            async with self._turn(), asyncio.timeout(self._timeout):
                return await script(keys=keys, args=args)
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        except ResponseError as exc:
            refusal = refused(exc)
            if refusal is None:
                raise
            raise refusal from exc

    async def _pipeline(
        self,
        commands: Sequence[Command],
        scripts: Sequence[tuple[AsyncScript, Sequence[str], Sequence[Any]]] = (),
        *,
        transaction: bool = False,
        durable: bool = False,
    ) -> list[Any]:
        """``commands``, then the ``scripts`` calls, in one round trip, their replies in
        order; in a MULTI/EXEC transaction if ``transaction``. An error reply is raised
        once every reply is read. With ``durable`` (a write to acknowledge) and
        ``FIML_REDIS_WAIT_REPLICAS`` set, the pipeline waits for the replicas (module
        docstring) and fails with a storage error if too few acknowledged in time.

        Scripts go as plain EVALSHA commands by their ``sha``: a script object in a
        redis-py pipeline first asks Redis which scripts it holds (SCRIPT EXISTS, one more
        round trip per call, which made a create take two). ``initialize`` loaded them;
        should Redis have lost them (a restart, SCRIPT FLUSH, a replica promoted by a
        failover), they are loaded and the whole pipeline is sent once more, which is safe
        because every command sent along with a script here is idempotent (index updates,
        reads) and a script that met NOSCRIPT did not run.
        """
        if not commands and not scripts:
            return []
        calls = [*commands]
        calls += [
            ("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in scripts
        ]
        try:
            replies = await self._send(calls, transaction=transaction, durable=durable)
        except NoScriptError:
            await self._load_scripts()
            replies = await self._send(calls, transaction=transaction, durable=durable)
        return replies

    def _waits(self, commands: Sequence[Command]) -> list[tuple[int, Any]]:
        """Where WAITs go in a durable pipeline of ``commands``: (after which command, on
        which cluster node, None on a single Redis), one per connection it uses. A
        command's node is its first key's (a script's KEYS, an index update's key)."""
        if not isinstance(self.redis, RedisCluster):
            return [(len(commands) - 1, None)]
        last: dict[str, tuple[int, Any]] = {}
        for position, command in enumerate(commands):
            key = command[3] if command[0] == "EVALSHA" else command[1]
            node = self.redis.get_node_from_key(key)
            if node is not None:
                last[node.name] = (position, node)
        return sorted(last.values(), key=lambda place: place[0])

    async def _send(
        self, commands: Sequence[Command], *, transaction: bool, durable: bool = False
    ) -> list[Any]:
        wait = ("WAIT", self._wait_replicas, self._wait_milliseconds)
        try:
            # where the WAITs go reads the slot map, which a failover may leave unknown
            waits = self._waits(commands) if durable and self._wait_replicas else []
            after = {position: node for position, node in waits}
            async with (
                self._turn(),
                asyncio.timeout(self._timeout + self._wait_milliseconds / 1000 * bool(waits)),
                self.redis.pipeline(transaction=transaction) as pipe,
            ):
                for position, command in enumerate(commands):
                    pipe.execute_command(*command)
                    if position in after:
                        node = after[position]
                        if node is None:
                            pipe.execute_command(*wait)
                        else:  # on the node, hence the connection, that took the command
                            pipe.execute_command(*wait, target_nodes=node)
                replies: list[Any] = await pipe.execute()
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        except ResponseError as exc:
            refusal = refused(exc)
            if refusal is None:
                raise
            raise refusal from exc
        if not waits:
            return replies
        kept: list[Any] = []
        reply_of = iter(replies)
        for position in range(len(commands)):
            kept.append(next(reply_of))
            if position in after:
                self._check_replicas(int(next(reply_of)))
        return kept

    def _check_replicas(self, acknowledged: int) -> None:
        if acknowledged < self._wait_replicas:
            raise StorageUnavailableError(
                "redis",
                f"the write reached {acknowledged} of {self._wait_replicas} replicas within "
                f"{self._wait_milliseconds / 1000:g} s; a failover may lose it",
            )
