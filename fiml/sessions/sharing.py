"""Sharing a session read-only: its owner lets another user read it, and can take that back.

A grant is one row of ``session_shares`` in the archive database, on every deployment:
while the session is active in Redis as well as after it is archived, so an archived
session stays shared. Nothing caches a grant: every read asks the database, so a revoked
grant stops the next read.

A reader may read the session (:func:`readable_session`) and list it
(:meth:`SessionSharing.shared_with`); every write path keeps asking for the caller's own
session (``owned_session``), so to its reader a shared session is one they cannot write,
extend or close, answered exactly as an unknown one. A session that is neither the caller's
nor shared with them is not found after the same reads as an unknown id: the caller's own
read, then the grant lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast
from uuid import UUID

from sqlalchemy import Connection, Table, and_, delete, func, or_, select, tuple_

from fiml.core.audit import audit
from fiml.core.errors import InvalidInputError, SessionNotFoundError
from fiml.sessions.backends.base import ListCursor
from fiml.sessions.db import ShareRow
from fiml.sessions.identifiers import parse_session_id
from fiml.sessions.limits import check_user_id
from fiml.sessions.models import Session
from fiml.sessions.paging import checked_cursor, checked_page_limit
from fiml.sessions.sql_dialects import dialect_insert

if TYPE_CHECKING:
    from fiml.sessions.store import SessionStore

__all__ = [
    "MAX_READERS",
    "SHARES",
    "SessionSharing",
    "Share",
    "ShareChange",
    "SharedPage",
    "forget_shares",
    "grant_share",
    "list_shares",
    "readable_session",
    "revoke_share",
    "share_owner",
]

SHARES = cast(Table, ShareRow.__table__)
MAX_READERS = 100
"""The most users one session may be shared with at a time."""


@dataclass(frozen=True, slots=True)
class Share:
    """One grant: ``reader_id`` may read ``session_id``, which is ``owner_id``'s."""

    session_id: UUID
    reader_id: str
    owner_id: str
    shared_at: datetime


@dataclass(frozen=True, slots=True)
class ShareChange:
    """What share or unshare did: whether ``reader_id`` may read ``session_id`` now, and
    whether the call changed that."""

    session_id: UUID
    reader_id: str
    shared: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class SharedPage:
    """A page of the sessions shared with a user, most recently shared first."""

    sessions: list[tuple[Share, Session]]
    next_cursor: str | None


def grant_share(conn: Connection, share: Share, *, max_readers: int) -> bool:
    """Record ``share``; False if that reader had it already (its first time is kept).

    The reader count is read in the same transaction; two owners' concurrent grants of one
    session may pass it by one, which the bound tolerates (it keeps a row count sane, it
    is no quota)."""
    readers = conn.execute(
        select(func.count()).select_from(SHARES).where(SHARES.c.session_id == share.session_id)
    ).scalar_one()
    stmt = (
        dialect_insert(conn.dialect.name, SHARES)
        .on_conflict_do_nothing()
        .returning(SHARES.c.reader_id)
    )
    if readers >= max_readers:
        exists = conn.execute(
            select(SHARES.c.reader_id).where(
                SHARES.c.session_id == share.session_id, SHARES.c.reader_id == share.reader_id
            )
        ).first()
        if exists is None:
            raise InvalidInputError(
                "user_id", share.reader_id, f"the session is shared with {max_readers} users"
            )
        return False
    row = conn.execute(
        stmt,
        {
            "session_id": share.session_id,
            "reader_id": share.reader_id,
            "owner_id": share.owner_id,
            "shared_at": share.shared_at,
        },
    ).first()
    return row is not None


def revoke_share(conn: Connection, session_id: UUID, reader_id: str) -> bool:
    """Remove ``reader_id``'s grant of ``session_id``; False if there was none."""
    stmt = delete(SHARES).where(SHARES.c.session_id == session_id, SHARES.c.reader_id == reader_id)
    return bool(conn.execute(stmt).rowcount)


def share_owner(conn: Connection, session_id: UUID, reader_id: str) -> str | None:
    """Whose session ``session_id`` is, if it is shared with ``reader_id``; else None."""
    stmt = select(SHARES.c.owner_id).where(
        SHARES.c.session_id == session_id, SHARES.c.reader_id == reader_id
    )
    owner: str | None = conn.execute(stmt).scalar_one_or_none()
    return owner


def list_shares(
    conn: Connection, reader_id: str, *, limit: int, after: ListCursor | None
) -> list[Share]:
    """The grants to ``reader_id``, most recent first, after ``after`` (a range scan of
    ``ix_session_shares_reader``)."""
    stmt = select(SHARES).where(SHARES.c.reader_id == reader_id)
    if after is not None:
        stmt = stmt.where(
            or_(
                SHARES.c.shared_at < after.created_at,
                and_(
                    SHARES.c.shared_at == after.created_at, SHARES.c.session_id < after.session_id
                ),
            )
        )
    stmt = stmt.order_by(SHARES.c.shared_at.desc(), SHARES.c.session_id.desc()).limit(limit)
    return [
        Share(r.session_id, r.reader_id, r.owner_id, r.shared_at) for r in conn.execute(stmt).all()
    ]


def forget_shares(conn: Connection, grants: list[tuple[UUID, str]]) -> None:
    """Drop grants (session id, reader id) whose session is gone."""
    if grants:
        conn.execute(
            delete(SHARES).where(tuple_(SHARES.c.session_id, SHARES.c.reader_id).in_(grants))
        )


async def readable_session(
    store: SessionStore, caller: str, session_id: UUID | str, *, history_limit: int | None = None
) -> Session:
    """The session ``session_id`` if ``caller`` may read it: their own, or shared with them.

    SessionNotFoundError otherwise, after the same two reads (the caller's own read, then
    the grant lookup) for another user's session as for an unknown id, so neither reply
    nor timing tells them apart. For tools that only read (info, history, the resource,
    forking); a write must keep asking for the caller's own session.
    """
    sid = parse_session_id(session_id)
    reader = cast(str, check_user_id(caller, optional=False))
    session = await store.get_user_session(sid, reader, history_limit=history_limit)
    if session is not None:
        return session
    owner = await store.archive.share_owner(sid, reader)
    if owner is not None:
        session = await store.get_user_session(sid, owner, history_limit=history_limit)
        if session is not None:
            return session
    raise SessionNotFoundError(sid)


class SessionSharing:
    """Grant, revoke and list read-only access to sessions, on ``store``'s archive database."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def _owned(self, owner: str, session_id: UUID | str) -> Session:
        sid = parse_session_id(session_id)
        session = await self.store.get_user_session(sid, owner, history_limit=0)
        if session is None:
            raise SessionNotFoundError(sid)
        return session

    async def share(self, owner: str, session_id: UUID | str, user_id: str) -> ShareChange:
        """Let ``user_id`` read ``owner``'s session (``changed`` False if they could already).

        Any session of the owner's, in any state: an archived one stays readable.
        """
        reader = cast(str, check_user_id(user_id, optional=False))
        session = await self._owned(owner, session_id)
        if reader == owner:
            raise InvalidInputError("user_id", user_id, "is the session's owner")
        share = Share(session.id, reader, owner, self.store.now())
        granted = await self.store.archive.grant_share(share, max_readers=MAX_READERS)
        audit("share", session_id=session.id, reader=reader, outcome="ok" if granted else "had")
        return ShareChange(session.id, reader, shared=True, changed=granted)

    async def unshare(self, owner: str, session_id: UUID | str, user_id: str) -> ShareChange:
        """Take ``user_id``'s access to ``owner``'s session back (``changed`` False if they
        had none). Their next read of it is refused."""
        reader = cast(str, check_user_id(user_id, optional=False))
        session = await self._owned(owner, session_id)
        revoked = await self.store.archive.revoke_share(session.id, reader)
        outcome = "ok" if revoked else "absent"
        audit("unshare", session_id=session.id, reader=reader, outcome=outcome)
        return ShareChange(session.id, reader, shared=False, changed=revoked)

    async def shared_with(
        self, reader: str, *, limit: int = 20, cursor: str | None = None
    ) -> SharedPage:
        """A page of the sessions shared with ``reader``, most recently shared first.

        A grant whose session is gone (deleted by its owner or by retention) is dropped
        when met here; its place in the page stays empty, the cursor goes on after it."""
        user = cast(str, check_user_id(reader, optional=False))
        limit = checked_page_limit(limit)
        after = checked_cursor(cursor)
        grants = await self.store.archive.list_shares(user, limit=limit + 1, after=after)
        page, more = grants[:limit], len(grants) > limit
        found: list[tuple[Share, Session]] = []
        gone: list[tuple[UUID, str]] = []
        for grant in page:
            session = await self.store.get_user_session(
                grant.session_id, grant.owner_id, history_limit=0
            )
            if session is None:
                gone.append((grant.session_id, grant.reader_id))
            else:
                found.append((grant, session))
        if gone:
            await self.store.archive.forget_shares(gone)
        next_cursor = None
        if more and page:
            last = page[-1]
            next_cursor = ListCursor(last.shared_at, last.session_id).encode()
        return SharedPage(found, next_cursor)
