-- Read several runs' histories in one call (store/index.py's rebuild): one reply instead of
-- an XRANGE reply per run, which the client decodes entry by entry.
-- KEYS: the runs' event streams (one shard's: one hash tag).
-- ARGV: page, the most events read per run.
-- Returns per stream {events, last}: the payloads (field 'e', runstream.keys.Fields.EVENT)
-- of its first events, oldest first, and the id of the last one read when there may be
-- more (page of them read), else false.
local page = tonumber(ARGV[1])

local out = {}
for i, key in ipairs(KEYS) do
  local entries = redis.call('XRANGE', key, '-', '+', 'COUNT', page)
  local events = {}
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'e' then
        events[#events + 1] = fields[f + 1]
        break
      end
    end
  end
  local last = false
  if #entries == page then last = entries[#entries][1] end
  out[i] = {events, last}
end
return out
