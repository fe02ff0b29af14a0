-- The runs of a shard an executor may take, in the order they start (run id, runnable
-- score pairs; at most ARGV[1] of each kind): runs under way whose lease ended (their
-- worker died) or was given back (it stopped), then runs waiting their turn that no one
-- holds. Runs driven by a live worker are not returned: the scan costs what is free to
-- take, not what is active. ``full`` ('1') also returns runs under way missing from the
-- leases set (leased by a worker older than it): taken up by an occasional full scan.
--! include lease_time
local runnable, leases = KEYS[1], KEYS[2]
local size, band, full = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1'
local now = now_ms()
local out = {}

-- Runs under way whose lease ended or was given back.
local ended = redis.call('ZRANGE', leases, '-inf', now, 'BYSCORE', 'LIMIT', 0, size)
for _, run in ipairs(ended) do
  local score = redis.call('ZSCORE', runnable, run)
  if score then
    out[#out + 1] = run
    out[#out + 1] = score
  else
    redis.call('ZREM', leases, run)  -- nothing left to do for it
  end
end

local function unleased(run)
  local ends = redis.call('ZSCORE', leases, run)
  return not ends or tonumber(ends) <= now
end

-- Walks runnable between two scores, page by page, keeping runs no live lease holds.
local function walk(low, high, limit, keep)
  local found, offset = 0, 0
  while found < limit do
    local page = redis.call('ZRANGE', runnable, low, high, 'BYSCORE', 'LIMIT', offset, 256,
      'WITHSCORES')
    if #page == 0 then return end
    for i = 1, #page, 2 do
      if found < limit and keep(page[i]) then
        out[#out + 1] = page[i]
        out[#out + 1] = page[i + 1]
        found = found + 1
      end
    end
    if #page < 512 then return end  -- a short page: the last
    offset = offset + #page / 2
  end
end

if full then
  -- Runs under way that the leases set does not know of.
  walk('-inf', '(' .. band, size, function(run)
    return not redis.call('ZSCORE', leases, run)
  end)
end
-- Waiting runs: a leased one is in its first chunk (RunStarted not yet appended).
walk(band, '+inf', size, unleased)
return out
