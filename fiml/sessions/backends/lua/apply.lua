-- APPLY: one write to a session, decided by the rules of fiml/sessions/backends/rules.py
-- (the contract suite runs the same cases through both): every check, in the rules'
-- order, runs before any change. fiml/sessions/backends/redis_apply.py builds the
-- arguments and reads the reply.
-- KEYS: meta, queries, qids, context, preferences, intermediate_results, metadata, events,
-- assets.
-- ARGV[1]: the write's header, a JSON object; times and durations in it are decimal
--   strings of microseconds (exact, unlike JSON numbers, which Lua reads as doubles):
--   always: now, max_ttl (times), max_queries, max_state_keys (numbers), and queries: one
--     [id, cache_hit 0|1, query_type, timestamp] per new query (maybe none);
--   when set: expected_version (a number), expires_at, extend_by (times), close, end_now,
--     sliding (1: the expiry slides by the time since the last write, rules.slid_expiry);
--   when the write edits the list: assets, tags: {added, removed, replace, min, max}, the
--     edit to merge into the stored list (base.ListChange) and the sizes the result must
--     stay within;
--   when the write changes state keys: sections: per state section, how many keys it sets
--     and how many it deletes (eight numbers; absent, no section is read);
--   when it changes context or preferences: state_events, how many timeline events that makes;
--   index: the assets the write brings (added ones, its queries' symbols; maybe none).
-- KEYS[9]: the assets the user's asset indexes hold already.
-- ARGV[2..]: each new query's JSON, in order; then per state section its key/JSON pairs
--   to set, then its keys to delete; then the state events' JSON; then one timeline event
--   per new query, in order (only those of queries not yet recorded are appended).
-- Returns {'ok', total_queries, cache_hits, version, expires_at, new queries added,
-- user_id ('' for none), created_at, then each asset of index not in KEYS[9]} or a
-- refusal: {'not_found'}, {'closed'}, {'expired'}, {'archived'}, {'conflict', version},
-- {'limit'}, {'state_keys', section 1-4, keys after the merge}, {'list_size', list name,
-- size after the merge}, {'ttl', stored expires_at}.
local function decimal(x) return string.format('%.0f', x) end  -- exact, unlike tostring
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'version', 'expires_at', 'closed_at', 'frozen',
  'total_queries', 'cache_hits', 'first_query_at', 'last_query_at', 'last_accessed_at',
  'created_at', 'user_id')
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
    local hash, kept = KEYS[3 + s], {}  -- key -> whether the section holds it afterwards
    for j = p, p + 2 * nset - 1, 2 do kept[ARGV[j]] = true end
    for j = p + 2 * nset, p + 2 * nset + ndel - 1 do kept[ARGV[j]] = false end  -- HDEL runs last
    local size = redis.call('HLEN', hash)
    for key, stays in pairs(kept) do
      local stored = redis.call('HEXISTS', hash, key) == 1
      if stays and not stored then size = size + 1 elseif stored and not stays then size = size - 1 end
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
if w.sliding and not (w.close or w.end_now) then
  -- later by the time since the last write, never past max_ttl from creation
  local base = new_expiry or expires
  local gained = math.max(now - tonumber(m[9]), 0)
  local target = math.min(base + gained, tonumber(m[10]) + max_ttl)
  if target > base then new_expiry = target end
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

-- The timeline: the write's state events, then its new queries' events, in this script,
-- so that a change and its event are one.
local events = {}
local nstate = w.state_events or 0
for j = p, p + nstate - 1 do events[#events + 1] = ARGV[j] end
p = p + nstate
for _, i in ipairs(fresh) do events[#events + 1] = ARGV[p + i - 1] end
if #events > 0 then redis.call('RPUSH', KEYS[8], unpack(events)) end

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
local reply = {'ok', total, hits, version + 1, decimal(new_expiry or expires), #fresh,
  m[11] or '', m[10]}
for _, asset in ipairs(w.index or {}) do
  if redis.call('SISMEMBER', KEYS[9], asset) == 0 then reply[#reply + 1] = asset end
end
return reply
