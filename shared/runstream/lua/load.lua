-- Load a run in one round trip: its snapshot and the events after it (up to max_events).
-- With a lease key (KEYS[5]) and its owner: first take the run's execution lease (as
-- Leases.acquire: SET NX PX), and load nothing if someone else holds it.
-- The lease's end goes to the shard's leases set (KEYS[6]; runnable_scan.lua reads it).
-- Returns {'deleted'}, {'leased'} (held by another) or {'ok', snapshot or false, events}.
-- The meta hash's 'snap_id' is runstream.keys.Fields.SNAPSHOT_ID.
--! include lease_time
local meta, snapshot_key, tombs, events, lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local leases = KEYS[6]
local run_id, max_events, lease_owner, lease_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if redis.call('HEXISTS', tombs, run_id) == 1 then return {'deleted'} end
if lease then
  if not redis.call('SET', lease, lease_owner, 'NX', 'PX', lease_ms) then return {'leased'} end
  redis.call('ZADD', leases, now_ms() + tonumber(lease_ms), run_id)
end
local snap_id = redis.call('HGET', meta, 'snap_id')
local snapshot = false
local start = '-'
if snap_id then
  snapshot = redis.call('GET', snapshot_key)
  if snapshot then start = '(' .. snap_id end
end
return {'ok', snapshot, redis.call('XRANGE', events, start, '+', 'COUNT', max_events)}
