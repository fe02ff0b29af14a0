-- Shared fragment: the Redis server's clock in ms, as lease ends in the leases set use it
-- (the same clock that expires the lease keys).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
