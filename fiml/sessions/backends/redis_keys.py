"""The Redis keyspace of the session backend, and the Lua scripts (``lua/``) that act on it.

Every key FIML writes starts with the deployment's prefix (``FIML_REDIS_KEY_PREFIX``,
``fiml`` by default, written ``<p>`` below). :class:`RedisKeyspace` names every key the
sessions package touches, so the whole layout reads at a glance::

    <p>:s:{<session id>}:meta                  hash: scalar fields, counters, version (below)
    <p>:s:{<session id>}:queries               list: query JSON, oldest first
    <p>:s:{<session id>}:qids                  set: tracked query ids (re-sends are no-ops)
    <p>:s:{<session id>}:context               hash: key -> JSON value
    <p>:s:{<session id>}:preferences           hash: key -> JSON value
    <p>:s:{<session id>}:intermediate_results  hash: key -> JSON value
    <p>:s:{<session id>}:metadata              hash: key -> JSON value
    <p>:s:{<session id>}:events                list: timeline event JSON, oldest first
    <p>:s:{<session id>}:assets                set: assets the user's asset indexes hold
    <p>:assets:{<user id>}:<asset>             sorted set: the user's session ids that
                                               held or queried the asset, score = created_at
    <p>:users:{<n>:<user id>}:sessions        sorted set: shard n of a user's sessions,
                                               session id, score = created_at
    <p>:expiry:{<n>}                           sorted set: shard n of the expiry index,
                                               session id, score <= expires_at
    <p>:job-lock:<job name>                    string: holder token of a running job
    <p>:layout:no-ttl                          string: set once no session key has a TTL
    <p>:layout:index-shards                    string: the shard count the indexes hold
    <p>:user:<user id>:sessions, <p>:expiry    the unsharded indexes of earlier versions,
                                               moved into the shards at start (below)
    <p>:quote:<provider key>                   string: cached quote JSON, written by
                                               fiml.market.cache (market data)

The keys of one session share the hash tag ``{<session id>}``, so they live in one Redis
Cluster slot and one script may touch them all. The two indexes are keys of their own and
are never touched by a script. Each is split into ``FIML_REDIS_INDEX_SHARDS`` shards
(:meth:`RedisKeyspace.shard_of`: a CRC-32 of the session id), each shard under a hash tag
of its own, so that a cluster spreads them over its slots, hence its masters: a user's
shard ``n`` is tagged ``{<n>:<user id>}``, so different users' indexes spread too. A
session's entries sit in the same shard number of both indexes. The unsharded indexes of
earlier versions (and shards of an earlier shard count) are moved into the shards by
:mod:`~fiml.sessions.backends.redis_indexes` when a backend starts. A user's asset indexes
(:mod:`~fiml.sessions.backends.redis_search`) are keys of their own too, never touched by a
script, each under the hash tag ``{<user id>}``.

Fields of the meta hash (times are integer microseconds since the Unix epoch, as decimal
strings, so they round-trip exactly and compare exactly inside Lua, whose numbers are
doubles, exact up to 2**53): each field of ``fields.META_FIELDS`` under its ``meta_name``
(an optional one absent while it is None), ``qt:<query type>`` (one count per type), and
``frozen`` (present once an archiver has exported the session: it refuses writes from then
on, so nothing written after the copy can be lost when the keys are deleted).
"""

from __future__ import annotations

import zlib
from importlib import resources
from typing import NamedTuple
from uuid import UUID

from fiml.core.config import DEFAULT_REDIS_INDEX_SHARDS, DEFAULT_REDIS_KEY_PREFIX

__all__ = [
    "APPLY",
    "CREATE",
    "FREEZING_READ",
    "QUERY_TYPE_PREFIX",
    "READ",
    "REMOVE",
    "RedisKeyspace",
    "SessionKeys",
]

QUERY_TYPE_PREFIX = "qt:"
"""Prefix of the meta hash's per-type query counts (a field, not a key)."""


class SessionKeys(NamedTuple):
    """The keys of one session, in the order every script receives them as KEYS."""

    meta: str
    queries: str
    qids: str
    context: str
    preferences: str
    intermediate_results: str
    metadata: str
    events: str
    """The timeline list; after the seven state keys, so that the scripts' earlier KEYS
    keep their places."""
    assets: str
    """The assets of this session that its user's asset indexes hold (``redis_search``);
    last, after ``events``."""

    @property
    def sections(self) -> tuple[str, str, str, str]:
        """The state-section hashes, in the order of ``models.STATE_SECTIONS``."""
        return (self.context, self.preferences, self.intermediate_results, self.metadata)


class RedisKeyspace:
    """The keys of one deployment, all under ``prefix`` (``settings.redis_key_prefix``),
    its indexes in ``shards`` shards (``settings.redis_index_shards``)."""

    __slots__ = (
        "layout_marker",
        "legacy_expiry_index",
        "prefix",
        "shard_count_marker",
        "shards",
    )

    def __init__(
        self, prefix: str = DEFAULT_REDIS_KEY_PREFIX, shards: int = DEFAULT_REDIS_INDEX_SHARDS
    ) -> None:
        self.prefix = prefix
        self.shards = shards
        self.layout_marker = f"{prefix}:layout:no-ttl"
        """Present once the keys of every session are persistent: earlier versions gave
        them a TTL, which ``RedisBackend.initialize`` removes once per database."""
        self.shard_count_marker = f"{prefix}:layout:index-shards"
        """The shard count the indexes were last moved into (absent: none yet)."""
        self.legacy_expiry_index = f"{prefix}:expiry"
        """The one expiry index of versions before the shards."""

    def shard_of(self, session_id: UUID | str) -> int:
        """The index shard of a session: stable across processes and restarts (CRC-32,
        not Python's salted ``hash``)."""
        return zlib.crc32(str(session_id).encode()) % self.shards

    def expiry_shard(self, shard: int) -> str:
        """Shard ``shard`` of the expiry index."""
        return f"{self.prefix}:expiry:{{{shard}}}"

    def expiry_index(self, session_id: UUID | str) -> str:
        """The expiry index shard that holds a session."""
        return self.expiry_shard(self.shard_of(session_id))

    def expiry_shards(self) -> list[str]:
        """Every shard of the expiry index, in shard order."""
        return [self.expiry_shard(n) for n in range(self.shards)]

    def user_shard(self, user_id: str, shard: int) -> str:
        """Shard ``shard`` of one user's index."""
        return f"{self.prefix}:users:{{{shard}:{user_id}}}:sessions"

    def user_index(self, user_id: str, session_id: UUID | str) -> str:
        """The shard of a user's index that holds a session."""
        return self.user_shard(user_id, self.shard_of(session_id))

    def user_shards(self, user_id: str) -> list[str]:
        """Every shard of one user's index, in shard order."""
        return [self.user_shard(user_id, n) for n in range(self.shards)]

    def legacy_user_index(self, user_id: str) -> str:
        """The one index of a user's sessions of versions before the shards."""
        return f"{self.prefix}:user:{user_id}:sessions"

    def session_keys(self, session_id: UUID | str) -> SessionKeys:
        """The hash-tagged keys of one session."""
        base = f"{self.prefix}:s:{{{session_id}}}"
        return SessionKeys(
            meta=f"{base}:meta",
            queries=f"{base}:queries",
            qids=f"{base}:qids",
            context=f"{base}:context",
            preferences=f"{base}:preferences",
            intermediate_results=f"{base}:intermediate_results",
            metadata=f"{base}:metadata",
            events=f"{base}:events",
            assets=f"{base}:assets",
        )

    def meta_key(self, session_id: UUID | str) -> str:
        """The meta hash of one session (``session_keys(session_id).meta``)."""
        return f"{self.prefix}:s:{{{session_id}}}:meta"

    def user_asset_index(self, user_id: str, asset: str) -> str:
        """The sorted set of one user's sessions that held or queried ``asset``."""
        return f"{self.prefix}:assets:{{{user_id}}}:{asset}"

    def job_lock(self, job_name: str) -> str:
        """The lock of one background job (:class:`~fiml.sessions.joblock.RedisJobLock`)."""
        return f"{self.prefix}:job-lock:{job_name}"


def _lua(name: str) -> str:
    """The text of the script ``lua/<name>.lua`` shipped in this package."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


CREATE = _lua("create")
"""Create a session's keys unless its meta hash exists (returns 1, else 0)."""
APPLY = _lua("apply")
"""One write to a session: every check, then every change (see the script's header)."""
READ = _lua("read")
"""Read a session (and, for archival, freeze it on request)."""
FREEZING_READ = "#!lua flags=allow-oom\n" + READ
"""The READ script as archival runs it, allowed to freeze a session while Redis is full to
its ``maxmemory``: a full Redis refuses every write, and without the freeze cleanup could
not archive the sessions whose removal frees the memory. Plain reads keep the script
without flags, so a Redis that refuses writes for another reason (MISCONF, a failed
snapshot) still serves them; the flags need Redis 7.0 or newer."""
REMOVE = _lua("remove")
"""Delete a session's keys; returns whether it was there and its user.

Each script's text is read once, here, at import; ``RedisBackend`` registers each with its
client (``register_script``), which runs it by EVALSHA."""
