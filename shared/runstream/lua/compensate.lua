-- Take back one revert step's effects, newest first, each only if the element still carries
-- the run's stamp (or force). Returns one letter per effect: c compensated (or already was),
-- x conflict (skipped). The outcome is kept under the step's mark: a redone step returns it
-- and changes nothing.
local values, stamps, step_mark = KEYS[1], KEYS[2], KEYS[3]
local force, n, ttl = ARGV[1] == '1', tonumber(ARGV[2]), ARGV[3]
-- ARGV[4..]: n quadruples (element, stamp, before_stamp, before)

local done = redis.call('GET', step_mark)
if done then return done end
local out = {}
for i = 0, n - 1 do
  local el, st, bs, before = ARGV[4 + 4 * i], ARGV[5 + 4 * i], ARGV[6 + 4 * i], ARGV[7 + 4 * i]
  local cur = redis.call('HGET', stamps, el) or ''
  if cur == bs then
    out[#out + 1] = 'c'
  elseif cur == st or force then
    if before == '' then redis.call('HDEL', values, el)
    else redis.call('HSET', values, el, before) end
    if bs == '' then redis.call('HDEL', stamps, el) else redis.call('HSET', stamps, el, bs) end
    out[#out + 1] = 'c'
  else
    out[#out + 1] = 'x'
  end
end
local result = table.concat(out)
redis.call('SET', step_mark, result, 'EX', ttl)
return result
