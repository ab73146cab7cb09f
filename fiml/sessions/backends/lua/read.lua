-- Every read of a session: one snapshot in one round trip; archival also freezes what it reads.
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
