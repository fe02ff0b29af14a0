-- Extend a run's execution lease, if this owner still holds it. Returns 0 when it does not.
-- The shard's leases set gets the lease's new end.
--! include lease_time
local lease, leases = KEYS[1], KEYS[2]
local owner, ttl_ms, run_id = ARGV[1], ARGV[2], ARGV[3]

if redis.call('GET', lease) ~= owner then return 0 end
redis.call('ZADD', leases, now_ms() + tonumber(ttl_ms), run_id)
return redis.call('PEXPIRE', lease, ttl_ms)
