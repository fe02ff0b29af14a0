-- Answer a run query on one shard from its query index (see index_update.lua): a page of
-- runs after a marker in the query's order, or the number of matches. Read-only except
-- for scratch keys under <tmp>, deleted before returning.
-- Returns {'page', summary JSON...} (at most limit, in order) or {'count', n}.
local base, runs, tmp = KEYS[1], KEYS[2], KEYS[3]
local q = cjson.decode(ARGV[1])
-- q.clauses: {neg, sets = {member...}, ranges = {{field, min, max, lo, lo_in, hi, hi_in}...},
--             scan = false | {field, arg, op, values}}: a run matches a clause when it is in
--             one of the sets or ranges or the scan holds, negated when neg.
-- q.sort: {{field, desc, text}...}, the run id last; q.limit; q.count;
-- q.marker: false | {id, scores = {...}, texts = {...}} (one per sort key)
-- q.walk_budget: how many runs a walk in sort order may expect to read before the planner
--             intersects the index sets instead.

local function zkey(field) return base .. ':z:' .. field end
local function skey(member) return base .. ':s:' .. member end

-- A run's text for a keyword or text field, as runstream.query reads it (index_update).
local texts = {}
local function text_of(id, field)
  if field == 'id' then return id end
  local key = base .. ':t:' .. field
  local by_id = texts[key]
  if by_id == nil then by_id = {}; texts[key] = by_id end
  local v = by_id[id]
  if v == nil then
    v = redis.call('HGET', key, id) or ''
    by_id[id] = v
  end
  return v
end

local decoded = {}
local function summary(id)
  local s = decoded[id]
  if s == nil then
    local raw = redis.call('HGET', runs, id)
    s = raw and cjson.decode(raw) or false
    decoded[id] = s
  end
  return s
end

-- Bytewise order (Lua's own string order follows the server's locale).
local function bytes_cmp(a, b)
  if a == b then return 0 end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return #a < #b and -1 or 1
end

local function num(score)
  if score == '-inf' then return -math.huge end
  if score == 'inf' or score == '+inf' then return math.huge end
  return tonumber(score)
end

-- ------------------------------------------------------------------ matching one run
local function scan_values(id, scan)
  if scan.text then return {text_of(id, scan.field)} end
  if scan.field == 'id' then return {id} end
  local s = summary(id)
  if not s then return {} end
  if scan.arg then
    local v = s.args[scan.arg]
    if v == nil then return {} end
    return {v}
  end
  if scan.field == 'labels' then
    local out = {}
    for k, v in pairs(s.labels) do out[#out + 1] = k .. '=' .. v end
    return out
  end
  local v = s[scan.field]
  if v == nil or v == cjson.null then return {} end
  return {v}
end

local function scan_hit(id, scan)
  for _, v in ipairs(scan_values(id, scan)) do
    if type(v) == 'string' then
      if scan.op == 'has' then
        if string.find(v, scan.values[1], 1, true) then return true end
      else
        for _, w in ipairs(scan.values) do
          local r = bytes_cmp(v, w)
          local op = scan.op
          if (op == 'eq' and r == 0) or (op == 'gt' and r > 0) or (op == 'gte' and r >= 0)
            or (op == 'lt' and r < 0) or (op == 'lte' and r <= 0) then
            return true
          end
        end
      end
    end
  end
  return false
end

local function in_range(score, r)
  if not score or score == '-inf' then return false end
  local x = num(score)
  if r[4] ~= cjson.null and (x < r[4] or (x == r[4] and not r[5])) then return false end
  if r[6] ~= cjson.null and (x > r[6] or (x == r[6] and not r[7])) then return false end
  return true
end

local function clause_hit(id, c)
  local hit = false
  for _, member in ipairs(c.sets) do
    if redis.call('SISMEMBER', skey(member), id) == 1 then hit = true break end
  end
  if not hit then
    for _, r in ipairs(c.ranges) do
      if in_range(redis.call('ZSCORE', zkey(r[1]), id), r) then hit = true break end
    end
  end
  if not hit and c.scan then hit = scan_hit(id, c.scan) end
  if c.neg then return not hit end
  return hit
end

local function all_hit(id, clauses)
  for _, c in ipairs(clauses) do
    if not clause_hit(id, c) then return false end
  end
  return true
end

-- ------------------------------------------------------------------ order
local primary = zkey(q.sort[1][1])
local first_desc = q.sort[1][2]
local tuples = {}
local function tuple(id, primary_score)
  local t = tuples[id]
  if t == nil then
    t = {scores = {}}
    for i, k in ipairs(q.sort) do
      local score = (i == 1 and primary_score) or redis.call('ZSCORE', zkey(k[1]), id)
      t.scores[i] = num(score or '-inf')
    end
    tuples[id] = t
  end
  return t
end


-- <0 when run a comes before b in the query's order; b may be the marker.
local function order_cmp(a, ta, b, tb, b_texts)
  for i, k in ipairs(q.sort) do
    local x, y = ta.scores[i], tb.scores[i]
    local r = 0
    if x ~= y then
      r = x < y and -1 or 1
    elseif k[3] and x ~= -math.huge then
      r = bytes_cmp(text_of(a, k[1]), b_texts and b_texts[i] or text_of(b, k[1]))
    end
    if r ~= 0 then return k[2] and -r or r end
  end
  local r = bytes_cmp(a, b)
  return first_desc and -r or r
end

-- ------------------------------------------------------------------ planning
local scan_clauses = {}
local index_only = true
for _, c in ipairs(q.clauses) do
  if c.scan then index_only = false; scan_clauses[#scan_clauses + 1] = c end
end
local total = redis.call('ZCARD', primary)

local temps = {}
local function temp()
  local key = tmp .. ':' .. (#temps + 1)
  temps[#temps + 1] = key
  return key
end
local function cleanup()
  if #temps > 0 then redis.call('DEL', unpack(temps)) end
end

-- A key holding the runs of an index-only clause.
local function clause_key(c)
  local parts = {}
  for _, member in ipairs(c.sets) do parts[#parts + 1] = skey(member) end
  for _, r in ipairs(c.ranges) do
    local key = temp()
    redis.call('ZRANGESTORE', key, zkey(r[1]), r[2], r[3], 'BYSCORE')
    parts[#parts + 1] = key
  end
  local key = parts[1]
  if #parts ~= 1 then
    key = temp()
    if #parts == 0 then
      redis.call('DEL', key)
    else
      redis.call('ZUNIONSTORE', key, #parts, unpack(parts))
    end
  end
  if c.neg then
    -- Every run has an id score, always finite: the intersection below weighs clause
    -- keys by 0, and 0 * -inf (a missing value's score) is no number.
    local rest = temp()
    redis.call('ZDIFFSTORE', rest, 2, zkey('id'), key)
    key = rest
  end
  return key
end

-- How many runs a clause holds at most (sum of its sets and ranges).
local function clause_size(c)
  if c.neg or c.scan then return total end
  local n = 0
  for _, member in ipairs(c.sets) do n = n + redis.call('SCARD', skey(member)) end
  for _, r in ipairs(c.ranges) do n = n + redis.call('ZCOUNT', zkey(r[1]), r[2], r[3]) end
  return n
end

-- Walk the primary sort key and test each run, or intersect the index first? Walk when
-- the clauses look loose enough to fill a page soon (assuming they are independent).
local selectivity = 1
for _, c in ipairs(q.clauses) do
  if total > 0 then selectivity = selectivity * clause_size(c) / total end
end
-- A text first key ties whole groups of runs (its score keeps 6 bytes of the text), so a
-- walk may read all of them: intersect first whenever a clause can narrow the runs.
local narrowing = false
for _, c in ipairs(q.clauses) do
  if not c.scan then narrowing = true end
end
local walk = (not q.count) and (total == 0 or selectivity * q.walk_budget >= q.limit)
  and not (q.sort[1][3] and q.sort[1][1] ~= 'id' and narrowing)

local source = primary
local checks = q.clauses
if not walk and #q.clauses > 0 then
  local keys = {primary}
  local weights = {1}
  for _, c in ipairs(q.clauses) do
    if not c.scan then
      keys[#keys + 1] = clause_key(c)
      weights[#weights + 1] = 0
    end
  end
  checks = scan_clauses
  if q.count and index_only then
    local n = redis.call('ZINTERCARD', #keys, unpack(keys))
    cleanup()
    return {'count', n}
  end
  if #keys > 1 then
    source = temp()
    local args = {source, #keys}
    for _, k in ipairs(keys) do args[#args + 1] = k end
    args[#args + 1] = 'WEIGHTS'
    for _, w in ipairs(weights) do args[#args + 1] = w end
    redis.call('ZINTERSTORE', unpack(args))
  end
end

if q.count then
  if #checks == 0 then
    local n = redis.call('ZCARD', source)
    cleanup()
    return {'count', n}
  end
  local n, start = 0, 0
  while true do
    local batch = redis.call('ZRANGE', source, start, start + 499)
    if #batch == 0 then break end
    for _, id in ipairs(batch) do
      if all_hit(id, checks) then n = n + 1 end
    end
    start = start + 500
  end
  cleanup()
  return {'count', n}
end

-- ------------------------------------------------------------------ a page
local marker = q.marker
local marker_tuple = marker and {scores = {}} or nil
if marker then
  for i, score in ipairs(marker.scores) do marker_tuple.scores[i] = num(score) end
end
local start = 0
if marker then
  local ms = marker.scores[1]
  if first_desc then
    start = redis.call('ZCOUNT', source, '(' .. ms, '+inf')
  else
    start = (ms == '-inf') and 0 or redis.call('ZCOUNT', source, '-inf', '(' .. ms)
  end
end

local found, last_score = {}, nil
local batch_size = math.max(q.limit, 100)
local done = false
while not done do
  local args = {source, start, start + batch_size - 1}
  if first_desc then args[#args + 1] = 'REV' end
  args[#args + 1] = 'WITHSCORES'
  local batch = redis.call('ZRANGE', unpack(args))
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    -- Past a full page, only runs tied with the last one on the first key may still
    -- belong to it (a later key decides).
    if #found >= q.limit and score ~= last_score then done = true break end
    local t = tuple(id, score)
    if (not marker or order_cmp(id, t, marker.id, marker_tuple, marker.texts) > 0)
      and all_hit(id, checks) then
      found[#found + 1] = id
      last_score = score
    end
  end
  start = start + batch_size
end
cleanup()

table.sort(found, function(a, b) return order_cmp(a, tuples[a], b, tuples[b]) < 0 end)
local out = {'page'}
for i = 1, math.min(#found, q.limit) do
  out[#out + 1] = redis.call('HGET', runs, found[i])
end
return out
