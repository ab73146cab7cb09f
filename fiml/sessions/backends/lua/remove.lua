-- KEYS: the session's keys.  Deletes them; returns {1 if the session was there, user_id}.
local user = redis.call('HGET', KEYS[1], 'user_id')
local existed = redis.call('EXISTS', KEYS[1])
redis.call('UNLINK', unpack(KEYS))
return {existed, user}
