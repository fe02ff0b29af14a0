-- Rebuild one run's read-model entry and query index postings, keeping the newer of two
-- summaries: a worker may append while the rebuild runs.
--! include index_update
local index, runnable, index_base = KEYS[1], KEYS[2], KEYS[3]
local run_id, summary, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
local active, runnable_score, postings = ARGV[4] == '1', ARGV[5], ARGV[6]

local current = redis.call('HGET', index, run_id)
if current and cjson.decode(current)['version'] > version then return 0 end
redis.call('HSET', index, run_id, summary)
index_update(index_base, run_id, postings)
if active then redis.call('ZADD', runnable, 'LT', runnable_score, run_id) end
return 1
