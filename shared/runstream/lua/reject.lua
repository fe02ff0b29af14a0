-- Report a command rejected for a run without history (so with no stream to append to):
-- once on the feed (the marker dedupes redeliveries), and ack the command message.
-- Feed field names as in runstream.keys.Fields: 'r', 'v' (0: the run has no history), 'e'.
local feed, rejected_marker, commands = KEYS[1], KEYS[2], KEYS[3]
local run_id, event, ttl, group, ack_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('SET', rejected_marker, '1', 'NX', 'EX', ttl) then
  redis.call('XADD', feed, '*', 'r', run_id, 'v', 0, 'e', event)
end
if ack_id ~= '' then redis.call('XACK', commands, group, ack_id) end
return 1
