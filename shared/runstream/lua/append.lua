-- Append a command's (or the executor's) events to a run, atomically, on the run's shard slot.
-- Checks: the run is not deleted, the command was not applied before (dedupe), the expected
-- version, and the executor's lease. Then appends the events, copies them to the shard feed,
-- writes the read model and the runnable set, stores a snapshot when due, and acks the
-- command message; with a chunk's confirmation (or a tracked run), its log lines (bounded:
-- the oldest dropped and counted) and result files. A deleted run is not acked here: the caller reports the rejection and
-- acks in one step.
-- Returns {status, version}: ok | dup | stale | lease | deleted.
-- Field names as in runstream.keys.Fields: events 'e'; feed 'r', 'v', 'e'; meta 'v', 'snap_id'.
-- With the summary, the run's query index postings (index_update.lua: index_apply).
-- release_lease '1': the executor's last append for the run gives its lease back (DEL
-- instead of PEXPIRE), saving the release's own round trip. The shard's leases set (KEYS[15])
-- follows the lease: its new end, or the run leaves it with its last need for an executor.
--! include index_update
--! include lease_time
local events, meta, seen, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local index, runnable, lease, commands = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local tombs, snapshot_key = KEYS[9], KEYS[10]
local logs, results, result_meta, index_base = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local leases = KEYS[15]
local expected_version, command_id = tonumber(ARGV[1]), ARGV[2]
local lease_owner, lease_ms, run_id = ARGV[3], ARGV[4], ARGV[5]
local summary, runnable_score = ARGV[6], ARGV[7]
local group, ack_id, snapshot = ARGV[8], ARGV[9], ARGV[10]
local n = tonumber(ARGV[11])
local log_max, output_at = ARGV[12], ARGV[13]
local n_lines, n_results = tonumber(ARGV[14]), tonumber(ARGV[15])
local postings, postings_based_on, index_ops = ARGV[16], ARGV[17], ARGV[18]
local release_lease = ARGV[19]
-- ARGV[20..]: n pairs of (event for the run's stream, event for the feed), then n_lines
-- log lines, then n_results triples (result name, content, meta JSON)
local first_event = 20

if redis.call('HEXISTS', tombs, run_id) == 1 then return {'deleted', 0} end
if command_id ~= '' and redis.call('SISMEMBER', seen, command_id) == 1 then
  if ack_id ~= '' then redis.call('XACK', commands, group, ack_id) end
  return {'dup', 0}
end
local v = tonumber(redis.call('HGET', meta, 'v') or '0')
if v ~= expected_version then return {'stale', v} end
if lease_owner ~= '' then
  if redis.call('GET', lease) ~= lease_owner then return {'lease', v} end
  if release_lease == '1' then
    redis.call('DEL', lease)
  else
    redis.call('PEXPIRE', lease, lease_ms)
    redis.call('ZADD', leases, now_ms() + tonumber(lease_ms), run_id)
  end
end
local last = ''
for i = 0, n - 1 do
  last = redis.call('XADD', events, '*', 'e', ARGV[first_event + 2 * i])
  redis.call('XADD', feed, '*', 'r', run_id, 'v', v + i + 1, 'e', ARGV[first_event + 1 + 2 * i])
end
local at = first_event + 2 * n
for i = 0, n_lines - 1 do
  redis.call('XADD', logs, '*', 't', output_at, 'l', ARGV[at + i])
end
if n_lines > 0 then
  local dropped = redis.call('XTRIM', logs, 'MAXLEN', log_max)
  if dropped > 0 then redis.call('HINCRBY', meta, 'log_dropped', dropped) end
end
at = at + n_lines
for i = 0, n_results - 1 do
  local name = ARGV[at + 3 * i]
  redis.call('HSET', results, name, ARGV[at + 3 * i + 1])
  redis.call('HSET', result_meta, name, ARGV[at + 3 * i + 2])
end
redis.call('HSET', meta, 'v', v + n)
if command_id ~= '' then redis.call('SADD', seen, command_id) end
if summary ~= '' then
  redis.call('HSET', index, run_id, summary)
  index_apply(index_base, run_id, postings, postings_based_on, index_ops)
end
if runnable_score == '-' then
  redis.call('ZREM', runnable, run_id)
  redis.call('ZREM', leases, run_id)
elseif runnable_score ~= '' then
  -- LT: a waiting run's place (priority, age) is kept until it starts, then it moves
  -- ahead of every waiting one.
  redis.call('ZADD', runnable, 'LT', runnable_score, run_id)
end
if snapshot ~= '' then
  redis.call('SET', snapshot_key, snapshot)
  redis.call('HSET', meta, 'snap_id', last)
end
if ack_id ~= '' then redis.call('XACK', commands, group, ack_id) end
return {'ok', v + n}
