-- Extend a run's execution lease, if this owner still holds it. Returns 0 when it does not.
local lease = KEYS[1]
local owner, ttl_ms = ARGV[1], ARGV[2]

if redis.call('GET', lease) == owner then return redis.call('PEXPIRE', lease, ttl_ms) end
return 0
