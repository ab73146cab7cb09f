"""The command path of the Redis backend: every call it makes to Redis goes through here.

A call is one command, one script run (EVALSHA), or a pipeline of both, each bounded as a
whole by the backend's timeout; a Redis that cannot be reached or does not answer in time
is a :class:`~fiml.core.errors.StorageUnavailableError`, and a Redis that is up but
refuses writes (full to its ``maxmemory`` under ``noeviction``, or stopped writes after a
failed snapshot, MISCONF) a :class:`~fiml.core.errors.StorageRefusedError`. The scripts are
the ``lua/*.lua`` files of :mod:`~fiml.sessions.backends.redis_keys`, registered with the client
(``register_script``) by :class:`~fiml.sessions.backends.redis.RedisBackend`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fiml.core.errors import StorageRefusedError, StorageUnavailableError
from fiml.sessions.backends import redis_keys as rk

__all__ = ["Command", "RedisCommands"]

Command = tuple[Any, ...]
_FAULTS = (RedisConnectionError, RedisTimeoutError, OSError)
"""What redis-py raises when Redis cannot be reached or does not answer in time (a busy
loading Redis, a full pool: ConnectionError subclasses); an error reply is none of these."""


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

    redis: Redis
    keys: rk.RedisKeyspace
    _timeout: float
    _create: AsyncScript
    _apply: AsyncScript
    _read: AsyncScript
    _freezing_read: AsyncScript
    _remove: AsyncScript

    async def _load_scripts(self) -> None:
        """Load every script ahead of its first call, which then needs no NOSCRIPT round
        trip (each :class:`~redis.commands.core.AsyncScript` loads itself again after one)."""
        scripts = (self._create, self._apply, self._read, self._freezing_read, self._remove)
        await self._pipeline([("SCRIPT LOAD", script.script) for script in scripts])

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
            async with asyncio.timeout(self._timeout):
                return await self.redis.execute_command(*command)  # type: ignore[no-untyped-call]
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
            async with asyncio.timeout(self._timeout):
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
    ) -> list[Any]:
        """``commands``, then the ``scripts`` calls, in one round trip, their replies in
        order; in a MULTI/EXEC transaction if ``transaction``. An error reply is raised
        once every reply is read.

        Scripts go as plain EVALSHA commands by their ``sha``: a script object in a
        redis-py pipeline first asks Redis which scripts it holds (SCRIPT EXISTS, one more
        round trip per call, which made a create take two). ``initialize`` loaded them;
        should Redis have lost them (a restart, SCRIPT FLUSH), they are loaded and the
        whole pipeline is sent once more, which is safe because every command sent along
        with a script here is idempotent (index updates, reads) and a script that met
        NOSCRIPT did not run.
        """
        if not commands and not scripts:
            return []
        calls = [*commands]
        calls += [
            ("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in scripts
        ]
        try:
            return await self._send(calls, transaction=transaction)
        except NoScriptError:
            await self._load_scripts()
            return await self._send(calls, transaction=transaction)

    async def _send(self, commands: Sequence[Command], *, transaction: bool) -> list[Any]:
        try:
            async with (
                asyncio.timeout(self._timeout),
                self.redis.pipeline(transaction=transaction) as pipe,
            ):
                for command in commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        except ResponseError as exc:
            refusal = refused(exc)
            if refusal is None:
                raise
            raise refusal from exc
