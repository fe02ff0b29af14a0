-- An operator's change to one element, with several network partitions: refused while a
-- chunk being written reserves the element (its commit would land over the change).
-- Returns '' when written, else the reserving chunk's token.
local values, stamps, pending = KEYS[1], KEYS[2], KEYS[3]
local el, value, stamp, delete = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'

local holder = redis.call('HGET', pending, el)
if holder then return holder end
if delete then redis.call('HDEL', values, el) else redis.call('HSET', values, el, value) end
redis.call('HSET', stamps, el, stamp)
return ''
