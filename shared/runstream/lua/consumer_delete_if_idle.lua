-- Remove a stale consumer only if it has nothing pending, checked in the same step as the
-- delete: entries it read since XINFO looked would otherwise be dropped, never redelivered.
local stream = KEYS[1]
local group, consumer = ARGV[1], ARGV[2]

if #redis.call('XPENDING', stream, group, '-', '+', 1, consumer) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
return 1
