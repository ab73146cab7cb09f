"""The Redis keyspace of the session backend, and the Lua scripts (``lua/``) that act on it.

Every key the backend touches is named here, so the whole layout reads at a glance::

    fiml:s:{<session id>}:meta                  hash: scalar fields, counters, version (below)
    fiml:s:{<session id>}:queries               list: query JSON, oldest first
    fiml:s:{<session id>}:qids                  set: tracked query ids (re-sends are no-ops)
    fiml:s:{<session id>}:context               hash: key -> JSON value
    fiml:s:{<session id>}:preferences           hash: key -> JSON value
    fiml:s:{<session id>}:intermediate_results  hash: key -> JSON value
    fiml:s:{<session id>}:metadata              hash: key -> JSON value
    fiml:user:<user id>:sessions                sorted set: session id, score = created_at
    fiml:expiry                                 sorted set: session id, score <= expires_at
    fiml:quote:<provider key>                   string: cached quote JSON (market data)
    fiml:job-lock:<job name>                    string: holder token of a running job
    fiml:layout:no-ttl                          string: set once no session key has a TTL

The keys of one session share the hash tag ``{<session id>}``, so they live in one Redis
Cluster slot and one script may touch them all. The two indexes are keys of their own and
are never touched by a script.

Fields of the meta hash (times are integer microseconds since the Unix epoch, as decimal
strings, so they round-trip exactly and compare exactly inside Lua, whose numbers are
doubles, exact up to 2**53): each field of ``fields.META_FIELDS`` under its ``meta_name``
(an optional one absent while it is None), ``qt:<query type>`` (one count per type), and
``frozen`` (present once an archiver has exported the session: it refuses writes from then
on, so nothing written after the copy can be lost when the keys are deleted).
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple
from uuid import UUID

__all__ = [
    "APPLY",
    "CREATE",
    "EXPIRY_INDEX",
    "JOB_LOCK_PREFIX",
    "LAYOUT_MARKER",
    "QUERY_TYPE_PREFIX",
    "QUOTE_CACHE_PREFIX",
    "READ",
    "REMOVE",
    "SessionKeys",
    "meta_key",
    "session_keys",
    "user_index",
]

PREFIX = "fiml"
EXPIRY_INDEX = f"{PREFIX}:expiry"
QUOTE_CACHE_PREFIX = f"{PREFIX}:quote:"
JOB_LOCK_PREFIX = f"{PREFIX}:job-lock:"
LAYOUT_MARKER = f"{PREFIX}:layout:no-ttl"
"""Present once the keys of every session are persistent: earlier versions gave them a
TTL, which ``RedisBackend.initialize`` removes once per database."""
QUERY_TYPE_PREFIX = "qt:"


class SessionKeys(NamedTuple):
    """The keys of one session, in the order every script receives them as KEYS."""

    meta: str
    queries: str
    qids: str
    context: str
    preferences: str
    intermediate_results: str
    metadata: str

    @property
    def sections(self) -> tuple[str, str, str, str]:
        """The state-section hashes, in the order of ``models.STATE_SECTIONS``."""
        return (self.context, self.preferences, self.intermediate_results, self.metadata)


def session_keys(session_id: UUID | str) -> SessionKeys:
    """The hash-tagged keys of one session."""
    base = f"{PREFIX}:s:{{{session_id}}}"
    return SessionKeys(
        meta=f"{base}:meta",
        queries=f"{base}:queries",
        qids=f"{base}:qids",
        context=f"{base}:context",
        preferences=f"{base}:preferences",
        intermediate_results=f"{base}:intermediate_results",
        metadata=f"{base}:metadata",
    )


def meta_key(session_id: UUID | str) -> str:
    """The meta hash of one session (``session_keys(session_id).meta``)."""
    return f"{PREFIX}:s:{{{session_id}}}:meta"


def user_index(user_id: str) -> str:
    """The sorted set of one user's sessions."""
    return f"{PREFIX}:user:{user_id}:sessions"


def _lua(name: str) -> str:
    """The text of the script ``lua/<name>.lua`` shipped in this package."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


CREATE = _lua("create")
"""Create a session's keys unless its meta hash exists (returns 1, else 0)."""
APPLY = _lua("apply")
"""One write to a session: every check, then every change (see the script's header)."""
READ = _lua("read")
"""Read a whole session for archival, freezing it on request."""
REMOVE = _lua("remove")
"""Delete a session's keys; returns whether it was there and its user.

Each script's text is read once, here, at import; ``RedisBackend`` registers each with its
client (``register_script``), which runs it by EVALSHA."""
