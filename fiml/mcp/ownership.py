"""Sessions belong to their users: a foreign session looks exactly like an unknown one."""

from __future__ import annotations

from uuid import UUID

from fiml.core.errors import (
    SessionArchivedError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
)
from fiml.mcp.auth import Identity
from fiml.sessions.models import Session, SessionStatus
from fiml.sessions.store import SessionStore, parse_session_id

__all__ = ["ensure_writable", "owned_session", "readable_session"]


async def owned_session(
    store: SessionStore,
    identity: Identity,
    session_id: str | UUID,
    *,
    history_limit: int | None = None,
) -> Session:
    """The caller's session ``session_id``; SessionNotFoundError if absent or someone else's,
    after the same reads either way (:meth:`SessionStore.get_user_session`), so neither the
    reply nor its timing tells another user's session from an unknown id."""
    sid = parse_session_id(session_id)
    session = await store.get_user_session(sid, identity.user_id, history_limit=history_limit)
    if session is None:
        raise SessionNotFoundError(sid)
    return session


async def readable_session(
    store: SessionStore,
    identity: Identity,
    session_id: str | UUID,
    *,
    history_limit: int | None = None,
) -> Session:
    """The session ``session_id`` if the caller may read it (its timeline, a fork of it);
    SessionNotFoundError otherwise, exactly as for an unknown id.

    The one place that says who may read a session that is not theirs to write: today only
    its owner (:func:`owned_session`); sharing extends this function, and every reader
    follows."""
    return await owned_session(store, identity, session_id, history_limit=history_limit)


def ensure_writable(session: Session) -> None:
    """Raise the error that says why ``session`` no longer accepts writes, if it does not."""
    status = session.status
    if status is SessionStatus.ARCHIVED:
        raise SessionArchivedError(session.id)
    if status is SessionStatus.CLOSED:
        raise SessionClosedError(session.id)
    if status is SessionStatus.EXPIRED:
        raise SessionExpiredError(session.id)
