-- Apply a prepared chunk's effects to the network, all or nothing, marked by its token.
-- Each effect applies only over the stamp its step read (before_stamp); a voided chunk is
-- refused, an applied one is not applied twice. Notifications go to the outbox.
-- Returns {'ok'} | {'applied'} | {'voided'} | {'conflict', element} |
-- {'reserved', element, holder}.
-- With several network partitions, KEYS[5] is the partition's reservations (element ->
-- token of a chunk prepared on several partitions): a reserved element changes nothing and
-- names the holder's token, leaving this chunk unmarked, to be tried again once the holder
-- is committed or voided (its stamps are checked then).
-- The chunk's marker lives ttl seconds. Outbox fields as in runstream.keys.Fields: 'run_id',
-- 'message'.
local values, stamps, chunk_mark, outbox, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local run, first, ttl, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
-- ARGV[5..]: n triples (element, before_stamp, after), then the count of notes and the notes

local mark = redis.call('GET', chunk_mark)
if mark == 'v' then return {'voided'} end
if mark == 'a' then return {'applied'} end
local sim = {}
for i = 0, n - 1 do
  local el, before_stamp = ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  local cur = sim[el]
  if cur == nil then cur = redis.call('HGET', stamps, el) or '' end
  if cur ~= before_stamp then return {'conflict', el} end
  sim[el] = run .. '/' .. (first + i)
end
-- Checked after the stamps: a changed stamp is a conflict whatever a reservation becomes.
if pending then
  for i = 0, n - 1 do
    local holder = redis.call('HGET', pending, ARGV[5 + 3 * i])
    if holder then return {'reserved', ARGV[5 + 3 * i], holder} end
  end
end
for i = 0, n - 1 do
  local el, after = ARGV[5 + 3 * i], ARGV[7 + 3 * i]
  if after == '' then redis.call('HDEL', values, el)
  else redis.call('HSET', values, el, after) end
  redis.call('HSET', stamps, el, run .. '/' .. (first + i))
end
local base = 5 + 3 * n
for i = 1, tonumber(ARGV[base]) do
  redis.call('XADD', outbox, '*', 'run_id', run, 'message', ARGV[base + i])
end
redis.call('SET', chunk_mark, 'a', 'EX', ttl)
return {'ok'}
