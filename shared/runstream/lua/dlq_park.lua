-- Park one command message in its shard's dead-letter stream, once: only the consumer
-- whose XACK still acknowledges the entry adds the letter. A worker paused after reading
-- the message, whose entry another worker claimed and parked meanwhile, adds nothing.
-- The stream is trimmed to its caps (count, age) in the same call.
-- Returns 1 parked, 0 already handled by someone else.
local commands, dlq = KEYS[1], KEYS[2]
local group, entry_id, maxlen, min_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- ARGV[5..]: the letter's field/value pairs

if redis.call('XACK', commands, group, entry_id) == 0 then return 0 end
local letter = {}
for i = 5, #ARGV do letter[#letter + 1] = ARGV[i] end
redis.call('XADD', dlq, 'MAXLEN', maxlen, '*', unpack(letter))
if min_id ~= '' then redis.call('XTRIM', dlq, 'MINID', min_id) end
return 1
