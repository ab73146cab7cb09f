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

__all__ = ["ensure_writable", "owned_session"]


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


def ensure_writable(session: Session) -> None:
    """Raise the error that says why ``session`` no longer accepts writes, if it does not."""
    status = session.status
    if status is SessionStatus.ARCHIVED:
        raise SessionArchivedError(session.id)
    if status is SessionStatus.CLOSED:
        raise SessionClosedError(session.id)
    if status is SessionStatus.EXPIRED:
        raise SessionExpiredError(session.id)
