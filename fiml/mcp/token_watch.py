"""The token file of a running server, followed live: edits take effect without a restart.

``fiml tokens add|revoke`` replace the file atomically; every server that serves it notices
on its next request (the file's identity is checked at most every
:data:`CHECK_INTERVAL_SECONDS`), so a revoked token stops working within that interval on
every process and a new one starts working. A file that becomes unreadable, invalid or
writable by others keeps the last good set of tokens and logs one error per bad version,
never a token or a hash.

A token file writable by its group or by others is refused at start: anyone who can write it
can grant themselves admin.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from fiml.core.errors import ConfigurationError
from fiml.mcp.auth import TokenFile

__all__ = ["CHECK_INTERVAL_SECONDS", "WatchedTokenFile", "check_permissions"]

CHECK_INTERVAL_SECONDS = 0.5
"""How often, at most, a request makes the server look at its token file again."""

logger = logging.getLogger(__name__)

_Signature = tuple[int, int, int, int, int] | None
"""What tells one version of the file from another: inode, size, mtime, ctime, mode."""


def check_permissions(path: Path, mode: int) -> None:
    """ConfigurationError, in one line saying how to fix it, if group or others may write."""
    if os.name == "posix" and mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(
            f"token file {path} is writable by group or others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class WatchedTokenFile:
    """The tokens of ``path`` as they are now, reloaded when the file changes.

    :meth:`load` reads the file at start and refuses a bad one; :meth:`current` is called
    per request and is a clock read almost always, a ``stat`` at most every ``interval``.
    """

    def __init__(
        self,
        path: Path,
        tokens: TokenFile,
        signature: _Signature,
        *,
        interval: float = CHECK_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._tokens = tokens
        self._seen = signature
        self._interval = interval
        self._clock = clock
        self._next_check = clock() + interval

    @classmethod
    def load(cls, path: Path, *, interval: float = CHECK_INTERVAL_SECONDS) -> WatchedTokenFile:
        """Read and check the file; ConfigurationError if it is missing, malformed, empty or
        writable by others."""
        signature = _signature(path)
        tokens = cls._read(path)
        if not tokens.entries:
            raise ConfigurationError(f"token file {path} holds no tokens; add one first")
        return cls(path, tokens, signature, interval=interval)

    @staticmethod
    def _read(path: Path) -> TokenFile:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigurationError(f"token file {path} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(f"token file {path} cannot be read: {exc}") from None
        check_permissions(path, mode)
        return TokenFile.load(path)

    def current(self) -> TokenFile:
        """The tokens in force: the file's latest good version."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._interval
            signature = _signature(self.path)
            if signature != self._seen:
                self._seen = signature
                self._reload()
        return self._tokens

    def _reload(self) -> None:
        try:
            tokens = self._read(self.path)
        except ConfigurationError as exc:
            # Once per bad version (its signature is remembered): a server does not fill its
            # log while an operator fixes the file, and keeps serving the last good tokens.
            logger.error(
                "token file not reloaded, keeping the last good tokens: %s",
                exc,
                extra={"event": "tokens_reload_failed"},
            )
            return
        self._tokens = tokens
        logger.info(
            "token file reloaded: %d tokens",
            len(tokens.entries),
            extra={"event": "tokens_reloaded"},
        )
