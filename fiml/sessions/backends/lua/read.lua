-- Every read of a session: one snapshot in one round trip; archival also freezes what it reads.
-- KEYS: the session's keys.  ARGV: index of the first query to return ('' for none),
-- freeze '1'|'', and optionally the owner's meta field and the owner ('' for anyone).
-- Returns {meta, queries, context, preferences, intermediate_results, metadata}, hashes
-- as flat field/value lists, or false if there is no such session, or it is not owned by
-- the owner given: that is one HGET whether the session is missing or someone else's.
-- Freezing marks the session so that it refuses writes from then on (archival does it).
if ARGV[4] and ARGV[4] ~= '' and redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then
  return false
end
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'frozen', '1') end
local queries = {}
if ARGV[1] ~= '' then queries = redis.call('LRANGE', KEYS[2], ARGV[1], -1) end
return {meta, queries, redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]),
  redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7])}
