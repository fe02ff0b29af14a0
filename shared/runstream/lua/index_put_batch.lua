-- Rebuild many runs' read-model entries and query index postings of one shard at once,
-- keeping the newer of two summaries per run (a worker may append while the rebuild runs).
-- A run the index does not hold yet (the rebuild dropped it) gets its entries with one
-- multi-member ZADD/SADD/HSET per key for the whole batch; one it holds (a worker was
-- quicker) goes through index_update, which diffs its stored postings.
-- A run without outputs (outputs '0') also loses any log and result files it has (what
-- store/outputs.rebuild leaves for it); its keys are <run keys base><run_id>:<name>, in the
-- shard's hash tag like every key here.
-- KEYS: the shard's run index, runnable set, query index base, run keys base.
-- ARGV: n, then per run: run_id, summary, version, active ('1'/'0'), runnable score,
-- postings, outputs ('1'/'0').
-- Returns how many runs were written.
--! include index_update
local index, runnable, index_base, run_base = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local n = tonumber(ARGV[1])

local zadds, sadds, summaries, texts, postings, queued = {}, {}, {}, {}, {}, {}
local no_outputs = {}
local written = 0
for i = 0, n - 1 do
  local at = 2 + 7 * i
  local run_id, summary, version = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  local active, runnable_score, new_postings = ARGV[at + 3] == '1', ARGV[at + 4], ARGV[at + 5]
  if ARGV[at + 6] == '0' then
    local run = run_base .. run_id
    no_outputs[#no_outputs + 1] = run .. ':logs'
    no_outputs[#no_outputs + 1] = run .. ':results'
    no_outputs[#no_outputs + 1] = run .. ':result_meta'
    redis.call('HDEL', run .. ':meta', 'log_dropped')
  end
  local current = redis.call('HGET', index, run_id)
  if not current or cjson.decode(current)['version'] <= version then
    written = written + 1
    summaries[#summaries + 1] = run_id
    summaries[#summaries + 1] = summary
    if current or redis.call('HEXISTS', index_base .. ':p', run_id) == 1 then
      index_update(index_base, run_id, new_postings)
    else
      local p = cjson.decode(new_postings)
      for field, score in pairs(p.z) do
        local list = zadds[field]
        if list == nil then list = {}; zadds[field] = list end
        list[#list + 1] = score
        list[#list + 1] = run_id
      end
      for _, member in ipairs(p.s) do
        local list = sadds[member]
        if list == nil then list = {}; sadds[member] = list end
        list[#list + 1] = run_id
      end
      if p.t ~= '' then
        texts[#texts + 1] = run_id
        texts[#texts + 1] = p.t
      end
      postings[#postings + 1] = run_id
      postings[#postings + 1] = new_postings
    end
    if active then
      queued[#queued + 1] = runnable_score
      queued[#queued + 1] = run_id
    end
  end
end

-- One command per key, in slices (Lua's unpack has a stack limit).
local SLICE = 2000
local function each_slice(list, call)
  for first = 1, #list, SLICE do
    call(unpack(list, first, math.min(first + SLICE - 1, #list)))
  end
end

if #summaries > 0 then
  each_slice(summaries, function(...) redis.call('HSET', index, ...) end)
end
for field, list in pairs(zadds) do
  local key = index_base .. ':z:' .. field
  each_slice(list, function(...) redis.call('ZADD', key, ...) end)
end
for member, list in pairs(sadds) do
  local key = index_base .. ':s:' .. member
  each_slice(list, function(...) redis.call('SADD', key, ...) end)
  local field, value = value_field(member)
  if field then redis.call('SADD', index_base .. ':v:' .. field, value) end
end
if #texts > 0 then
  each_slice(texts, function(...) redis.call('HSET', index_base .. ':t', ...) end)
end
if #postings > 0 then
  each_slice(postings, function(...) redis.call('HSET', index_base .. ':p', ...) end)
end
if #no_outputs > 0 then
  each_slice(no_outputs, function(...) redis.call('UNLINK', ...) end)
end
if #queued > 0 then
  each_slice(queued, function(...) redis.call('ZADD', runnable, 'LT', ...) end)
end
return written
