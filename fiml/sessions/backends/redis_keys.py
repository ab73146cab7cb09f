"""The Redis keyspace of the session backend, and the Lua scripts that act on it.

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
doubles, exact up to 2**53):

``user_id`` (absent for no user), ``type``, ``assets`` and ``tags`` (JSON lists),
``created_at``, ``expires_at``, ``last_accessed_at``, ``closed_at`` (absent while open),
``first_query_at`` and ``last_query_at`` (absent before the first query), ``version``,
``total_queries``, ``cache_hits``, ``qt:<query type>`` (one count per type), and
``frozen`` (present once an archiver has exported the session: it refuses writes from then
on, so nothing written after the copy can be lost when the keys are deleted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple
from uuid import UUID

__all__ = [
    "APPLY",
    "CREATE",
    "EXPIRY_INDEX",
    "JOB_LOCK_PREFIX",
    "LAYOUT_MARKER",
    "META_FIELDS_FOR_SUMMARY",
    "QUERY_TYPE_PREFIX",
    "QUOTE_CACHE_PREFIX",
    "READ",
    "REMOVE",
    "SCRIPTS",
    "LuaScript",
    "SessionKeys",
    "meta_key",
    "read_transaction",
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
META_FIELDS_FOR_SUMMARY = (
    "user_id",
    "type",
    "assets",
    "tags",
    "created_at",
    "expires_at",
    "last_accessed_at",
    "closed_at",
    "total_queries",
)
"""The meta fields a listing reads, in this order (HMGET)."""


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


def read_transaction(keys: SessionKeys, first_query: int | None) -> list[tuple[str | int, ...]]:
    """The commands that read one session as one snapshot: its meta hash, its queries from
    index ``first_query`` on (none for None; negative counts from the newest) and its
    state-section hashes, in a MULTI/EXEC transaction whose EXEC reply holds them in this
    order. Plain reads in a transaction cost Redis a third of the same reads in a script,
    which converts every value to Lua and back; a missing session reads as an empty meta.
    """
    queries: list[tuple[str | int, ...]] = (
        [] if first_query is None else [("LRANGE", keys.queries, first_query, -1)]
    )
    return [
        ("MULTI",),
        ("HGETALL", keys.meta),
        *queries,
        *(("HGETALL", key) for key in keys.sections),
        ("EXEC",),
    ]


def meta_key(session_id: UUID | str) -> str:
    """The meta hash of one session (``session_keys(session_id).meta``)."""
    return f"{PREFIX}:s:{{{session_id}}}:meta"


def user_index(user_id: str) -> str:
    """The sorted set of one user's sessions."""
    return f"{PREFIX}:user:{user_id}:sessions"


@dataclass(frozen=True)
class LuaScript:
    """A Lua script, run by its SHA1 (EVALSHA) and loaded again on NOSCRIPT."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324


_LUA_HELPERS = """
local function decimal(x) return string.format('%.0f', x) end  -- exact, unlike tostring
"""

CREATE = LuaScript(
    _LUA_HELPERS
    + """
-- KEYS: the session's keys.  ARGV: n, n meta field/value items,
-- nq, nq (query id, query JSON) pairs, then per state section: n, n key/JSON items.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local p = 1
local n = tonumber(ARGV[p])
redis.call('HSET', KEYS[1], unpack(ARGV, p + 1, p + n))
p = p + n + 1
local nq = tonumber(ARGV[p])
for i = p + 1, p + 2 * nq, 2 do
  redis.call('RPUSH', KEYS[2], ARGV[i + 1])
  redis.call('SADD', KEYS[3], ARGV[i])
end
p = p + 2 * nq + 1
for s = 4, 7 do
  n = tonumber(ARGV[p])
  for i = p + 1, p + n, 2 do redis.call('HSET', KEYS[s], ARGV[i], ARGV[i + 1]) end
  p = p + n + 1
end
return 1
""",
)

APPLY = LuaScript(
    _LUA_HELPERS
    + """
-- KEYS: the session's keys.
-- ARGV[1]: the write as a JSON object: now, max_queries, max_ttl;
-- optionally expected_version, expires_at, extend_by, close, end_now (1);
-- optionally assets, tags: {added, removed, replace, min, max}, an edit to merge into
-- the stored list (base.ListChange) and the size the result must have;
-- queries: one [id, cache_hit 0|1, query_type, timestamp] per new query;
-- sections: per state section, how many key/JSON pairs to set and keys to delete
-- (absent when the write changes no state: no section is read then).
-- Times and durations are decimal strings of microseconds (exact, unlike JSON numbers).
-- ARGV[2..]: each new query's JSON, then per state section its key/JSON pairs to set
-- and its keys to delete.
-- Returns {'ok', total_queries, cache_hits, version, expires_at, new queries added} or
-- {error code, detail}.
-- Every check (including each section's key count after the merge) runs before any write.
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'version', 'expires_at', 'closed_at', 'frozen',
  'total_queries', 'cache_hits', 'first_query_at', 'last_query_at', 'last_accessed_at')
if not m[1] then return {'not_found'} end
if m[3] then return {'closed'} end
local w = cjson.decode(ARGV[1])
local now = tonumber(w.now)
local expires = tonumber(m[2])
if expires <= now then return {'expired'} end
-- Frozen only matters for a session still open: one being archived on purpose.
if m[4] then return {'archived'} end
local version = tonumber(m[1])
if w.expected_version and w.expected_version ~= version then return {'conflict', version} end

local queries = w.queries
local fresh, seen = {}, {}
for i, q in ipairs(queries) do
  if not seen[q[1]] and redis.call('SISMEMBER', KEYS[3], q[1]) == 0 then
    seen[q[1]] = true
    fresh[#fresh + 1] = i
  end
end
local total = tonumber(m[5]) + #fresh
if #fresh > 0 and total > w.max_queries then return {'limit'} end

local sections = w.sections or {0, 0, 0, 0, 0, 0, 0, 0}
local p = 2 + #queries
for s = 1, 4 do
  local nset, ndel = sections[2 * s - 1], sections[2 * s]
  if nset > 0 then  -- only a write that sets keys can grow a section past the limit
    local size, counted = redis.call('HLEN', KEYS[3 + s]), {}
    for j = p, p + 2 * nset - 1, 2 do
      if not counted[ARGV[j]] and redis.call('HEXISTS', KEYS[3 + s], ARGV[j]) == 0 then
        size = size + 1
      end
      counted[ARGV[j]] = true
    end
    for j = p + 2 * nset, p + 2 * nset + ndel - 1 do
      if not counted[ARGV[j]] and redis.call('HEXISTS', KEYS[3 + s], ARGV[j]) == 1 then
        size = size - 1
      end
      counted[ARGV[j]] = true
    end
    if size > w.max_state_keys then return {'state_keys', s, size} end
  end
  p = p + 2 * nset + ndel
end

-- assets, tags: stored order kept, removals dropped, additions appended unless present.
local lists = {}
for _, name in ipairs({'assets', 'tags'}) do
  local edit = w[name]
  if edit then
    local merged, present, removed = {}, {}, {}
    for _, x in ipairs(edit.removed) do removed[x] = true end
    if not edit.replace then
      for _, x in ipairs(cjson.decode(redis.call('HGET', meta, name))) do
        if not removed[x] then merged[#merged + 1] = x; present[x] = true end
      end
    end
    for _, x in ipairs(edit.added) do
      if not present[x] then merged[#merged + 1] = x; present[x] = true end
    end
    if #merged < edit.min or #merged > edit.max then return {'list_size', name, #merged} end
    -- cjson encodes an empty table as an object
    lists[#lists + 1] = name; lists[#lists + 1] = #merged > 0 and cjson.encode(merged) or '[]'
  end
end

local max_ttl = tonumber(w.max_ttl)
local new_expiry = nil
if w.extend_by then
  new_expiry = expires + tonumber(w.extend_by)
  if new_expiry - now > max_ttl then return {'ttl', m[2]} end
elseif w.expires_at and tonumber(w.expires_at) ~= expires then
  new_expiry = tonumber(w.expires_at)
  if new_expiry <= now or new_expiry - now > max_ttl then return {'ttl', m[2]} end
end
if w.close or w.end_now then new_expiry = math.min(new_expiry or expires, now) end

local hits, first, last = tonumber(m[6]), m[7], m[8]
for _, i in ipairs(fresh) do
  local q = queries[i]
  redis.call('RPUSH', KEYS[2], ARGV[1 + i])
  redis.call('SADD', KEYS[3], q[1])
  redis.call('HINCRBY', meta, 'qt:' .. q[3], 1)
  hits = hits + q[2]
  local ts = q[4]
  if not first or tonumber(ts) < tonumber(first) then first = ts end
  if not last or tonumber(ts) > tonumber(last) then last = ts end
end

p = 2 + #queries
for s = 1, 4 do
  local nset, ndel = sections[2 * s - 1], sections[2 * s]
  for j = p, p + 2 * nset - 1, 2 do redis.call('HSET', KEYS[3 + s], ARGV[j], ARGV[j + 1]) end
  p = p + 2 * nset
  if ndel > 0 then redis.call('HDEL', KEYS[3 + s], unpack(ARGV, p, p + ndel - 1)) end
  p = p + ndel
end

local accessed = m[9]
if tonumber(w.now) > tonumber(accessed) then accessed = w.now end
local fields = {'version', version + 1, 'total_queries', total, 'cache_hits', hits,
  'last_accessed_at', accessed}
if first then
  fields[#fields + 1] = 'first_query_at'; fields[#fields + 1] = first
  fields[#fields + 1] = 'last_query_at'; fields[#fields + 1] = last
end
for _, item in ipairs(lists) do fields[#fields + 1] = item end
if w.close then fields[#fields + 1] = 'closed_at'; fields[#fields + 1] = w.now end
if new_expiry then
  fields[#fields + 1] = 'expires_at'; fields[#fields + 1] = decimal(new_expiry)
end
redis.call('HSET', meta, unpack(fields))
return {'ok', total, hits, version + 1, decimal(new_expiry or expires), #fresh}
""",
)

READ = LuaScript(
    """
-- Used by archival, which must freeze what it reads (plain reads use read_transaction).
-- KEYS: the session's keys.  ARGV: index of the first query to return ('' for none),
-- freeze '1'|''.  Returns {meta, queries, context, preferences, intermediate_results,
-- metadata}, hashes as flat field/value lists, or false if there is no such session.
-- Freezing marks the session so that it refuses writes from then on (archival does it).
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'frozen', '1') end
local queries = {}
if ARGV[1] ~= '' then queries = redis.call('LRANGE', KEYS[2], ARGV[1], -1) end
return {meta, queries, redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]),
  redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7])}
""",
)

REMOVE = LuaScript(
    """
-- KEYS: the session's keys.  Deletes them; returns {1 if the session was there, user_id}.
local user = redis.call('HGET', KEYS[1], 'user_id')
local existed = redis.call('EXISTS', KEYS[1])
redis.call('UNLINK', unpack(KEYS))
return {existed, user}
""",
)

SCRIPTS = (CREATE, APPLY, READ, REMOVE)
"""Every script, loaded by ``RedisBackend.initialize`` and again after a NOSCRIPT error."""
