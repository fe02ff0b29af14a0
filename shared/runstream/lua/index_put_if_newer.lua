-- Rebuild one run's read-model entry, keeping the newer of two summaries: a worker may
-- append while the rebuild runs.
local index, runnable = KEYS[1], KEYS[2]
local run_id, summary, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
local active, runnable_score = ARGV[4] == '1', ARGV[5]

local current = redis.call('HGET', index, run_id)
if current and cjson.decode(current)['version'] > version then return 0 end
redis.call('HSET', index, run_id, summary)
if active then redis.call('ZADD', runnable, 'LT', runnable_score, run_id) end
return 1
