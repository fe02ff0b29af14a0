-- Void a chunk that touches several network partitions, on one of them: unmarked or
-- prepared, it is marked voided (so it can never be prepared or committed here) and its
-- reservations are released. An applied chunk is left alone and 'a' returned (never
-- happens once the chunk is voided anywhere: runstream.store.network).
-- Returns the mark now held: 'v' or 'a'.
local chunk_mark, pending = KEYS[1], KEYS[2]
local token, ttl = ARGV[1], ARGV[2]
-- ARGV[3..]: the chunk's elements on this partition

local mark = redis.call('GET', chunk_mark)
if mark == 'a' or mark == 'v' then return mark end
if mark == 'p' then
  for i = 3, #ARGV do
    if redis.call('HGET', pending, ARGV[i]) == token then redis.call('HDEL', pending, ARGV[i]) end
  end
end
redis.call('SET', chunk_mark, 'v', 'EX', ttl)
return 'v'
