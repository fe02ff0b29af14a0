-- Give a run's execution lease back, if this owner still holds it.
local lease = KEYS[1]
local owner = ARGV[1]

if redis.call('GET', lease) == owner then return redis.call('DEL', lease) end
return 0
