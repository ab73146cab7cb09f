-- KEYS: the session's keys.  ARGV: n, n meta field/value items,
-- nq, nq (query id, query JSON) pairs, then per state section: n, n key/JSON items,
-- then na, na assets its user's asset indexes hold (KEYS[9]),
-- then the timeline's first events (JSON), if any (a fork's copy of its origin's).
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
n = tonumber(ARGV[p])
if n > 0 then redis.call('SADD', KEYS[9], unpack(ARGV, p + 1, p + n)) end
p = p + n + 1
if p <= #ARGV then redis.call('RPUSH', KEYS[8], unpack(ARGV, p, #ARGV)) end
return 1
