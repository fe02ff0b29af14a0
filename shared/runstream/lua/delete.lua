-- Delete a run: append its last events to the feed, leave a tombstone (audit stream and
-- tombstone hash), drop it from the read model and the runnable set, remove its own keys,
-- and ack the command message, atomically on the run's shard slot.
-- Returns {status, version}: ok | dup | stale | deleted.
-- Field names as in runstream.keys.Fields: feed 'r', 'v', 'e'; audit 'run_id', 'tombstone'.
--! include index_update
local meta, seen, feed, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local runnable, commands, tombs, audit = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local index_base = KEYS[9]
-- KEYS[10..]: the run's own keys, deleted
local expected_version, command_id, run_id = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local group, ack_id, tombstone = ARGV[4], ARGV[5], ARGV[6]
local n = tonumber(ARGV[7])
local postings_based_on, index_ops = ARGV[8], ARGV[9]  -- index_update.lua: index_apply
-- ARGV[10..]: n events for the feed

if redis.call('HEXISTS', tombs, run_id) == 1 then return {'deleted', 0} end
if command_id ~= '' and redis.call('SISMEMBER', seen, command_id) == 1 then
  if ack_id ~= '' then redis.call('XACK', commands, group, ack_id) end
  return {'dup', 0}
end
local v = tonumber(redis.call('HGET', meta, 'v') or '0')
if v ~= expected_version then return {'stale', v} end
for i = 0, n - 1 do
  redis.call('XADD', feed, '*', 'r', run_id, 'v', v + i + 1, 'e', ARGV[10 + i])
end
redis.call('XADD', audit, '*', 'run_id', run_id, 'tombstone', tombstone)
redis.call('HSET', tombs, run_id, tombstone)
redis.call('HDEL', index, run_id)
index_apply(index_base, run_id, '', postings_based_on, index_ops)
redis.call('ZREM', runnable, run_id)
for i = 10, #KEYS do redis.call('DEL', KEYS[i]) end
if ack_id ~= '' then redis.call('XACK', commands, group, ack_id) end
return {'ok', v + n}
