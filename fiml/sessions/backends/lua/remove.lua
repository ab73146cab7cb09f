-- KEYS: the session's keys.  Deletes them; returns {1 if the session was there, user_id
-- ('' for none), then the assets its user's asset indexes hold (KEYS[9])}.
local user = redis.call('HGET', KEYS[1], 'user_id') or ''
local existed = redis.call('EXISTS', KEYS[1])
local reply = {existed, user}
for _, asset in ipairs(redis.call('SMEMBERS', KEYS[9])) do reply[#reply + 1] = asset end
redis.call('UNLINK', unpack(KEYS))
return reply
