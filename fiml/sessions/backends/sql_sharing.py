"""The sharing and template half of the SQL archive tier: grants and templates.

:class:`SqlSharing` is mixed into :class:`~fiml.sessions.backends.sql.SqlBackend`, as
:class:`~fiml.sessions.backends.sql_metrics.SqlMetrics` is, and only runs the SQL that
lives with each concept (:mod:`fiml.sessions.sharing`, :mod:`fiml.sessions.templates`):
writes in its write transactions, reads on its read-only connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from sqlalchemy import Connection

from fiml.sessions.backends.base import ListCursor
from fiml.sessions.sharing import (
    Share,
    forget_shares,
    grant_share,
    list_shares,
    revoke_share,
    share_owner,
)
from fiml.sessions.templates import SessionTemplate, list_templates, load_template, save_template

__all__ = ["SqlSharing"]

T = TypeVar("T")


class SqlSharing:
    """The :class:`~fiml.sessions.backends.base.ArchiveTier` methods of shares and templates."""

    if TYPE_CHECKING:  # provided by the SQL backend this class is mixed into

        def _reading(
            self, work: Callable[[Connection], T], *, snapshot: bool = False
        ) -> Awaitable[T]: ...

        def _writing(self, work: Callable[[Connection], T]) -> Awaitable[T]: ...

    async def grant_share(self, share: Share, *, max_readers: int) -> bool:
        """Record a grant; False if the reader had it already."""
        return await self._writing(lambda conn: grant_share(conn, share, max_readers=max_readers))

    async def revoke_share(self, session_id: UUID, reader_id: str) -> bool:
        """Remove a grant; False if there was none."""
        return await self._writing(lambda conn: revoke_share(conn, session_id, reader_id))

    async def share_owner(self, session_id: UUID, reader_id: str) -> str | None:
        """The owner of ``session_id`` if it is shared with ``reader_id``."""
        return await self._reading(lambda conn: share_owner(conn, session_id, reader_id))

    async def list_shares(
        self, reader_id: str, *, limit: int, after: ListCursor | None
    ) -> list[Share]:
        """The grants to ``reader_id``, most recent first."""
        return await self._reading(
            lambda conn: list_shares(conn, reader_id, limit=limit, after=after)
        )

    async def forget_shares(self, grants: list[tuple[UUID, str]]) -> None:
        """Drop grants whose session is gone."""
        await self._writing(lambda conn: forget_shares(conn, grants))

    async def save_template(
        self, user_id: str, template: SessionTemplate, *, max_templates: int
    ) -> None:
        """Store a template, replacing the user's of the same name."""
        await self._writing(
            lambda conn: save_template(conn, user_id, template, max_templates=max_templates)
        )

    async def load_template(self, user_id: str, name: str) -> SessionTemplate | None:
        """The user's template ``name``, or None."""
        return await self._reading(lambda conn: load_template(conn, user_id, name))

    async def list_templates(
        self, user_id: str, *, limit: int, after: str | None
    ) -> list[SessionTemplate]:
        """The user's templates in name order, after ``after``."""
        return await self._reading(
            lambda conn: list_templates(conn, user_id, limit=limit, after=after)
        )
