-- Give a run's execution lease back, if this owner still holds it. In the shard's leases
-- set the run then ends at 0 if it still needs an executor (the next scan of any worker
-- takes it up), else it leaves that set.
local lease, leases, runnable = KEYS[1], KEYS[2], KEYS[3]
local owner, run_id = ARGV[1], ARGV[2]

if redis.call('GET', lease) ~= owner then return 0 end
if redis.call('ZSCORE', runnable, run_id) then
  redis.call('ZADD', leases, 0, run_id)
else
  redis.call('ZREM', leases, run_id)
end
return redis.call('DEL', lease)
