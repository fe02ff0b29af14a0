-- Rebuild many runs' read-model entries and query index postings of one shard at once,
-- keeping the newer of two summaries per run (a worker may append while the rebuild runs).
-- A run the index does not hold yet (the rebuild dropped it) gets its entries with one
-- multi-member ZADD/SADD/HSET per key for the whole batch, from the entries the caller
-- grouped by key (no postings decoded here); one it holds (a worker was quicker) goes
-- through index_update, which diffs its stored postings, and leaves the grouped entries.
-- A run without outputs (outputs '0') also loses any log and result files it has (what
-- store/outputs.rebuild leaves for it); its keys are <run keys base><run_id>:<name>, in the
-- shard's hash tag like every key here.
-- KEYS: the shard's run index, runnable set, query index base, run keys base.
-- ARGV: n; the batch's postings grouped by key (MessagePack: {z = {field = {score, run_id,
-- ...}}, s = {member = {run_id, ...}}, t = {run_id, texts, ...}, l = {field = {lex prefix,
-- run_id, ...}}}); then per run: run_id,
-- summary, version, active ('1'/'0'), runnable score, postings, outputs ('1'/'0').
-- Returns how many runs were written.
--! include index_update
local index, runnable, index_base, run_base = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local n, grouped = tonumber(ARGV[1]), ARGV[2]

local summaries, postings, queued, no_outputs = {}, {}, {}, {}
-- Runs whose grouped entries are not written (older than the index's, or updated in place).
local left_out = {}
local any_left_out = false
local written = 0
for i = 0, n - 1 do
  local at = 3 + 7 * i
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
      left_out[run_id], any_left_out = true, true
    else
      postings[#postings + 1] = run_id
      postings[#postings + 1] = new_postings
    end
    if active then
      queued[#queued + 1] = runnable_score
      queued[#queued + 1] = run_id
    end
  else
    left_out[run_id], any_left_out = true, true
  end
end

-- A grouped list without the entries of left-out runs: entries of `width` values, the run
-- id the `id_at`th.
local function without_left_out(list, width, id_at)
  if not any_left_out then return list end
  local kept = {}
  for first = 1, #list, width do
    if not left_out[list[first + id_at - 1]] then
      for j = first, first + width - 1 do kept[#kept + 1] = list[j] end
    end
  end
  return kept
end

-- One command per key, in slices (Lua's unpack has a stack limit).
local SLICE = 2000
local function each_slice(list, call)
  for first = 1, #list, SLICE do
    call(unpack(list, first, math.min(first + SLICE - 1, #list)))
  end
end

local g = cmsgpack.unpack(grouped)
if #summaries > 0 then
  each_slice(summaries, function(...) redis.call('HSET', index, ...) end)
end
for field, list in pairs(g.z) do
  local key = index_base .. ':z:' .. field
  each_slice(without_left_out(list, 2, 2), function(...) redis.call('ZADD', key, ...) end)
end
for member, list in pairs(g.s) do
  list = without_left_out(list, 1, 1)
  if #list > 0 then
    local key = index_base .. ':s:' .. member
    each_slice(list, function(...) redis.call('SADD', key, ...) end)
    local field, value = value_field(member)
    if field then redis.call('SADD', index_base .. ':v:' .. field, value) end
  end
end
each_slice(without_left_out(g.t, 2, 1), function(...) redis.call('HSET', index_base .. ':t', ...) end)
for field, list in pairs(g.l or {}) do
  list = without_left_out(list, 2, 2)
  local members = {}
  for i = 1, #list, 2 do
    members[i] = 0
    members[i + 1] = list[i] .. list[i + 1]
  end
  local key = lex_key(index_base, field)
  each_slice(members, function(...) redis.call('ZADD', key, ...) end)
end
each_slice(postings, function(...) redis.call('HSET', index_base .. ':p', ...) end)
each_slice(no_outputs, function(...) redis.call('UNLINK', ...) end)
each_slice(queued, function(...) redis.call('ZADD', runnable, 'LT', ...) end)
return written
