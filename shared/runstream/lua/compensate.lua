-- Take back one revert step's effects, newest first: the one place that decides, for each
-- effect, what a revert does with it. Per effect one letter:
--   a  the element is already as before the effect (nothing to do)
--   c  the element still carries the effect's stamp: put back as before
--   f  someone else changed the element since, but force: put back as before anyway
--   x  someone else changed the element since: a conflict, skipped
-- Returns {letters, holder...}: for each f or x, in order, the stamp the element carried
-- (who changed it). The outcome is kept under the step's mark: a redone step returns it
-- and changes nothing.
-- With several network partitions, KEYS[4] is the partition's reservations: a step that
-- would write an element reserved by a chunk being written changes nothing and returns
-- {'busy', element} (tried again later), so that chunk's commit never lands over it.
-- Dry mode (the revert plan) changes nothing and keeps no mark: it decides over the
-- stored stamps, overlaid with the stamps an earlier part of the plan would leave.
local values, stamps, step_mark, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local force, dry, ttl, n = ARGV[1] == '1', ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
-- ARGV[5..]: n quadruples (element, stamp, before_stamp, before); then m, and m pairs
-- (element, stamp) overlaying the stored stamps (dry mode only)

if not dry then
  local done = redis.call('GET', step_mark)
  if done then
    if string.sub(done, 1, 1) == '[' then return cjson.decode(done) end
    return {done}  -- a mark from before holders were kept
  end
  if pending then
    for i = 0, n - 1 do
      local el = ARGV[5 + 4 * i]
      if redis.call('HEXISTS', pending, el) == 1 then return {'busy', el} end
    end
  end
end
local overlay = {}
local m_at = 5 + 4 * n
for j = 0, tonumber(ARGV[m_at] or '0') - 1 do
  overlay[ARGV[m_at + 1 + 2 * j]] = ARGV[m_at + 2 + 2 * j]
end
local letters, holders = {}, {}
for i = 0, n - 1 do
  local el, st, bs, before = ARGV[5 + 4 * i], ARGV[6 + 4 * i], ARGV[7 + 4 * i], ARGV[8 + 4 * i]
  local cur = overlay[el]
  if cur == nil then cur = redis.call('HGET', stamps, el) or '' end
  local letter
  if cur == bs then
    letter = 'a'
  elseif cur == st then
    letter = 'c'
  elseif force then
    letter = 'f'
  else
    letter = 'x'
  end
  if letter == 'f' or letter == 'x' then holders[#holders + 1] = cur end
  if letter == 'c' or letter == 'f' then
    overlay[el] = bs
    if not dry then
      if before == '' then redis.call('HDEL', values, el)
      else redis.call('HSET', values, el, before) end
      if bs == '' then redis.call('HDEL', stamps, el) else redis.call('HSET', stamps, el, bs) end
    end
  end
  letters[#letters + 1] = letter
end
local result = {table.concat(letters)}
for _, holder in ipairs(holders) do result[#result + 1] = holder end
if not dry then redis.call('SET', step_mark, cjson.encode(result), 'EX', ttl) end
return result
