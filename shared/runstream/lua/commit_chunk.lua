-- Phase two of a chunk that touches several network partitions, on one of them: write its
-- effects here and release their reservations. Only a prepared chunk is committed (the
-- reservations kept its elements as prepare checked them); idempotent.
-- Returns {'ok'} | {'applied'} (already) | {'refused', mark}: not prepared here (never
-- happens when every partition was seen prepared first: runstream.store.network).
-- ARGV[5] '1' (force) writes over any mark but 'a': only for a chunk applied on another
-- partition whose marks here a failover lost (replication is asynchronous).
-- Outbox fields as in runstream.keys.Fields: 'run_id', 'message' (KEYS[5], partition 0).
local values, stamps, chunk_mark, pending, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, run, ttl, n, force = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'
-- ARGV[6..]: n triples (element, effect_no, after) in effect order, then the count of
-- notes and the notes

local mark = redis.call('GET', chunk_mark)
if mark == 'a' then return {'applied'} end
if mark ~= 'p' and not force then return {'refused', mark or ''} end
for i = 0, n - 1 do
  local el, no, after = ARGV[6 + 3 * i], ARGV[7 + 3 * i], ARGV[8 + 3 * i]
  if after == '' then redis.call('HDEL', values, el)
  else redis.call('HSET', values, el, after) end
  redis.call('HSET', stamps, el, run .. '/' .. no)
  if redis.call('HGET', pending, el) == token then redis.call('HDEL', pending, el) end
end
local base = 6 + 3 * n
local notes = tonumber(ARGV[base])
if notes > 0 then
  for i = 1, notes do
    redis.call('XADD', outbox, '*', 'run_id', run, 'message', ARGV[base + i])
  end
end
redis.call('SET', chunk_mark, 'a', 'EX', ttl)
return {'ok'}
