-- Resolve a chunk left behind by a dead worker: its marker if it has one ('a' applied,
-- 'v' voided), else mark it voided, so a late apply_chunk refuses it.
local chunk_mark = KEYS[1]
local ttl = ARGV[1]

local mark = redis.call('GET', chunk_mark)
if mark then return mark end
redis.call('SET', chunk_mark, 'v', 'EX', ttl)
return 'v'
