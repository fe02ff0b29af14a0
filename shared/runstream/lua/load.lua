-- Load a run in one round trip: its snapshot and the events after it (up to max_events).
-- Returns {'deleted'} or {'ok', snapshot or false, events}. The meta hash's 'snap_id' is
-- runstream.keys.Fields.SNAPSHOT_ID.
local meta, snapshot_key, tombs, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, max_events = ARGV[1], ARGV[2]

if redis.call('HEXISTS', tombs, run_id) == 1 then return {'deleted'} end
local snap_id = redis.call('HGET', meta, 'snap_id')
local snapshot = false
local start = '-'
if snap_id then
  snapshot = redis.call('GET', snapshot_key)
  if snapshot then start = '(' .. snap_id end
end
return {'ok', snapshot, redis.call('XRANGE', events, start, '+', 'COUNT', max_events)}
