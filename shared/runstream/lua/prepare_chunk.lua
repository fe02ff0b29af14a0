-- Phase one of a chunk that touches several network partitions, on one of them: check the
-- stamps its effects here were computed over, and reserve their elements for the chunk, so
-- that nothing else writes them until it is committed or voided (runstream.store.network).
-- Returns {'prepared'} (also when it already was) | {'applied'} | {'voided'} |
-- {'conflict', element}: an element changed; the chunk is then marked voided here, so that
-- it can never be committed anywhere | {'reserved', element, holder}: another chunk (token
-- holder) reserves an element; nothing changed here (unmarked), to be tried again once that
-- chunk is committed or voided.
local stamps, chunk_mark, pending = KEYS[1], KEYS[2], KEYS[3]
local token, run, ttl, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
-- ARGV[5..]: n triples (element, before_stamp, effect_no), in effect order

local mark = redis.call('GET', chunk_mark)
if mark == 'v' then return {'voided'} end
if mark == 'a' then return {'applied'} end
if mark == 'p' then return {'prepared'} end
-- A changed stamp first: final, whatever the holder of a reservation does (its void
-- changes no stamp, its commit changes more).
local sim = {}
for i = 0, n - 1 do
  local el, before_stamp, no = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local cur = sim[el]
  if cur == nil then cur = redis.call('HGET', stamps, el) or '' end
  if cur ~= before_stamp then
    redis.call('SET', chunk_mark, 'v', 'EX', ttl)
    return {'conflict', el}
  end
  sim[el] = run .. '/' .. no
end
for i = 0, n - 1 do
  local holder = redis.call('HGET', pending, ARGV[5 + 3 * i])
  if holder and holder ~= token then return {'reserved', ARGV[5 + 3 * i], holder} end
end
for el in pairs(sim) do redis.call('HSET', pending, el, token) end
redis.call('SET', chunk_mark, 'p', 'EX', ttl)
return {'prepared'}
