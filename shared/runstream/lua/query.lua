-- Answer a run query on one shard from its query index (see index_update.lua): a page of
-- runs after a marker in the query's order, or the number of matches. Read-only except
-- for scratch keys under <tmp>, deleted before returning.
-- Returns {'page', summary JSON...} (at most limit, in order) or {'count', n}.
local base, runs, tmp = KEYS[1], KEYS[2], KEYS[3]
local q = cjson.decode(ARGV[1])
-- q.clauses: {neg, sets = {member...}, ranges = {{field, min, max, lo, lo_in, hi, hi_in}...},
--             scan = false | {field, arg, op, values, text}}: a run matches a clause when it
--             is in one of the sets or ranges or the scan holds, negated when neg.
-- q.sort: {{field, desc, text, unsorted}...} (unsorted: 'arg' an argument, 'text' a keyword
--          without a sorted set, false), the run id last; q.limit; q.count;
-- q.marker: false | {id, classes = {...}, scores = {...}, texts = {...}} (one per sort key)
-- q.walk_budget: how many runs a walk in sort order may expect to read before the planner
--             narrows the runs down with the index sets instead.
-- q.max_values, q.max_matching: has/gt/lt on a keyword field reads the field's values when
--             it has at most max_values, and joins their sets when at most max_matching match.

local function zkey(field) return base .. ':z:' .. field end
local function skey(member) return base .. ':s:' .. member end
local ids = zkey('id') -- every run of the shard

-- A run's texts (keyword and text fields, arguments that are no numbers): one JSON object
-- per run, as runstream.query.postings writes it.
local texts = {}
local function text_of(id, field)
  if field == 'id' then return id end
  local t = texts[id]
  if t == nil then
    local raw = redis.call('HGET', base .. ':t', id)
    t = raw and cjson.decode(raw) or {}
    texts[id] = t
  end
  return t[field]
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
  if scan.text then return {text_of(id, scan.field) or ''} end
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

-- A text against a filter's operator and values (runstream.query._matches_one).
local function text_hit(v, op, values)
  if op == 'has' then return string.find(v, values[1], 1, true) ~= nil end
  for _, w in ipairs(values) do
    local r = bytes_cmp(v, w)
    if (op == 'eq' and r == 0) or (op == 'gt' and r > 0) or (op == 'gte' and r >= 0)
      or (op == 'lt' and r < 0) or (op == 'lte' and r <= 0) then
      return true
    end
  end
  return false
end

local function scan_hit(id, scan)
  for _, v in ipairs(scan_values(id, scan)) do
    if type(v) == 'string' and text_hit(v, scan.op, scan.values) then return true end
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
-- A run's place per sort key: a class (0 missing, 1 present; an argument: 1 a number, 2 a
-- text, after every number) and a number (the key's score), ties broken on the text.
local primary_key = q.sort[1]
local first_desc = primary_key[2]
local tuples = {}
local function tuple(id, primary_score)
  local t = tuples[id]
  if t == nil then
    t = {c = {}, n = {}}
    for i, k in ipairs(q.sort) do
      if k[4] == 'text' then
        t.c[i], t.n[i] = 1, 0 -- a keyword without a sorted set: its text decides
      else
        local score = (i == 1 and primary_score) or redis.call('ZSCORE', zkey(k[1]), id)
        if k[4] then -- an argument: a number (its score), a text, or none
          if score then
            t.c[i], t.n[i] = 1, num(score)
          else
            t.c[i], t.n[i] = (text_of(id, k[1]) and 2 or 0), 0
          end
        else
          t.c[i], t.n[i] = 1, num(score or '-inf')
        end
      end
    end
    tuples[id] = t
  end
  return t
end

-- <0 when run a comes before b in the query's order; b may be the marker.
local function order_cmp(a, ta, b, tb, b_texts)
  for i, k in ipairs(q.sort) do
    local r = 0
    if ta.c[i] ~= tb.c[i] then
      r = ta.c[i] < tb.c[i] and -1 or 1
    elseif ta.n[i] ~= tb.n[i] then
      r = ta.n[i] < tb.n[i] and -1 or 1
    elseif (k[3] and ta.n[i] ~= -math.huge) or (k[4] == 'arg' and ta.c[i] == 2) then
      r = bytes_cmp(text_of(a, k[1]) or '', b_texts and b_texts[i] or text_of(b, k[1]) or '')
    end
    if r ~= 0 then return k[2] and -r or r end
  end
  local r = bytes_cmp(a, b)
  return first_desc and -r or r
end

-- ------------------------------------------------------------------ scratch keys
local temps = {}
local function temp()
  local key = tmp .. ':' .. (#temps + 1)
  temps[#temps + 1] = key
  return key
end
local function cleanup()
  if #temps > 0 then redis.call('DEL', unpack(temps)) end
end

-- ------------------------------------------------------------------ planning
local total = redis.call('ZCARD', ids)

-- has/gt/lt on a keyword field or a label: the runs of the field's values that match (one
-- set each, index_update.lua), unless there are too many values to read or to join.
for _, c in ipairs(q.clauses) do
  local want = c.values
  if want and redis.call('SCARD', base .. ':v:' .. want.field) <= q.max_values then
    local sets = {}
    for _, v in ipairs(redis.call('SMEMBERS', base .. ':v:' .. want.field)) do
      if text_hit(v, want.op, want.values) then sets[#sets + 1] = want.field .. '=' .. v end
    end
    if #sets <= q.max_matching then
      c.sets, c.scan = sets, false
    end
  end
end

-- How many runs a clause's sets and ranges hold together (at most).
local function index_size(c)
  local n = 0
  for _, member in ipairs(c.sets) do n = n + redis.call('SCARD', skey(member)) end
  for _, r in ipairs(c.ranges) do n = n + redis.call('ZCOUNT', zkey(r[1]), r[2], r[3]) end
  return n
end

-- Positive index clauses (the runs in some sets or score ranges) can narrow the runs
-- down in Redis, smallest first; the rest is tested run by run.
local narrowing, others = {}, {}
local selectivity = 1
for _, c in ipairs(q.clauses) do
  if c.scan then
    others[#others + 1] = c
  else
    local size = index_size(c)
    if total > 0 then
      local share = math.min(1, size / total)
      selectivity = selectivity * (c.neg and (1 - share) or share)
    end
    if c.neg then
      others[#others + 1] = c
    else
      narrowing[#narrowing + 1] = {c, size}
    end
  end
end
table.sort(narrowing, function(a, b) return a[2] < b[2] end)

-- Walk the primary sort key and test each run, or narrow the runs down first? Walk when
-- the clauses look loose enough to fill a page soon (assuming they are independent). A
-- text first key ties whole groups of runs (its score keeps 6 bytes of the text), so a
-- walk may read all of them: narrow first whenever a clause can. An argument has no
-- sorted set in the order of the query: its runs are always sorted here.
local walk = (not q.count) and not primary_key[4]
  and (total == 0 or selectivity * q.walk_budget >= q.limit)
  and not (primary_key[3] and primary_key[1] ~= 'id' and #narrowing > 0)

-- ZREMRANGEBYSCORE bounds of the runs outside a range (ZRANGE BYSCORE bounds min, max).
local function remove_outside(key, min, max)
  if min:sub(1, 1) == '(' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', min:sub(2))
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. min)
  end
  if max ~= '+inf' then
    if max:sub(1, 1) == '(' then
      redis.call('ZREMRANGEBYSCORE', key, max:sub(2), '+inf')
    else
      redis.call('ZREMRANGEBYSCORE', key, '(' .. max, '+inf')
    end
  end
end

-- The runs of a clause on their own: a set's own key, else a scratch key.
local function clause_key(c)
  if #c.sets == 1 and #c.ranges == 0 then return skey(c.sets[1]) end
  if #c.sets == 0 and #c.ranges == 0 then return temp() end -- no run: a key never written
  local parts = {}
  for _, member in ipairs(c.sets) do parts[#parts + 1] = skey(member) end
  for _, r in ipairs(c.ranges) do
    local key = temp()
    redis.call('ZRANGESTORE', key, zkey(r[1]), r[2], r[3], 'BYSCORE')
    parts[#parts + 1] = key
  end
  if #parts == 1 then return parts[1] end
  local key = temp()
  redis.call('ZUNIONSTORE', key, #parts, unpack(parts))
  return key
end

-- The runs of `from` that also match clause c (nil: c is left to the run-by-run test).
local function narrow(from, c)
  if #c.ranges > 1 or (#c.ranges == 1 and #c.sets > 0) then return nil end
  if #c.ranges == 1 then
    local r = c.ranges[1]
    if c.neg and r[1]:sub(1, 5) == 'args.' then return nil end -- not every run has one
    local key = temp()
    redis.call('ZINTERSTORE', key, 2, from, zkey(r[1]), 'WEIGHTS', 0, 1)
    remove_outside(key, r[2], r[3])
    if c.neg then
      -- The runs not in the range, with from's scores: a candidate's score stays finite
      -- (the order below weighs it by 0, and 0 * -inf, a missing value, is no number).
      local rest = temp()
      redis.call('ZDIFFSTORE', rest, 2, from, key)
      key = rest
    end
    return key
  end
  local key = temp()
  if #c.sets == 0 then return c.neg and from or key end -- no run matches the clause itself
  if c.neg then
    local args = {key, #c.sets + 1, from}
    for _, member in ipairs(c.sets) do args[#args + 1] = skey(member) end
    redis.call('ZDIFFSTORE', unpack(args))
    return key
  end
  if #c.sets == 1 then
    redis.call('ZINTERSTORE', key, 2, from, skey(c.sets[1]))
    return key
  end
  -- in: each value's runs among `from`, then together (from is the smaller side).
  local parts = {}
  for _, member in ipairs(c.sets) do
    local part = temp()
    redis.call('ZINTERSTORE', part, 2, from, skey(member))
    parts[#parts + 1] = part
  end
  redis.call('ZUNIONSTORE', key, #parts, unpack(parts))
  return key
end

-- candidates: nil (every run) or a key holding the runs that passed the index clauses so
-- far; checks: the clauses still to test run by run.
local candidates = nil
local checks = {}
if q.count and #narrowing == 0 and #others == 1 and others[1].neg and not others[1].scan
  and #others[1].ranges == 0 then
  -- Every run but those in some sets.
  local c = others[1]
  local n = redis.call('SCARD', skey(c.sets[1]))
  if #c.sets > 1 then
    local key = temp()
    local args = {key, #c.sets}
    for _, member in ipairs(c.sets) do args[#args + 1] = skey(member) end
    n = redis.call('ZUNIONSTORE', unpack(args))
  end
  cleanup()
  return {'count', total - n}
end
if q.count and #narrowing == 0 then candidates = ids end
if walk then
  checks = q.clauses
else
  for i, entry in ipairs(narrowing) do
    if candidates == nil then
      candidates = clause_key(entry[1])
    else
      local narrowed = narrow(candidates, entry[1])
      if narrowed then candidates = narrowed else checks[#checks + 1] = entry[1] end
    end
  end
  for _, c in ipairs(others) do
    local narrowed = (candidates and not c.scan) and narrow(candidates, c) or nil
    if narrowed then candidates = narrowed else checks[#checks + 1] = c end
  end
end

-- The members of a key, a set or a sorted set, in batches.
local function each_member(key, visit)
  if redis.call('TYPE', key)['ok'] == 'set' then
    for _, id in ipairs(redis.call('SMEMBERS', key)) do visit(id) end
    return
  end
  local start = 0
  while true do
    local batch = redis.call('ZRANGE', key, start, start + 499)
    if #batch == 0 then break end
    for _, id in ipairs(batch) do visit(id) end
    start = start + 500
  end
end

if q.count then
  local source = candidates or ids
  local n = 0
  if #checks == 0 then
    n = candidates and redis.call('TYPE', source)['ok'] == 'set' and redis.call('SCARD', source)
      or redis.call('ZCARD', source)
  else
    each_member(source, function(id) if all_hit(id, checks) then n = n + 1 end end)
  end
  cleanup()
  return {'count', n}
end

-- ------------------------------------------------------------------ a page
local marker = q.marker
local marker_tuple = nil
if marker then
  marker_tuple = {c = marker.classes, n = {}}
  for i, score in ipairs(marker.scores) do marker_tuple.n[i] = num(score) end
end
local function after_marker(id, t)
  return not marker or order_cmp(id, t, marker.id, marker_tuple, marker.texts) > 0
end

local found = {}
if primary_key[4] then
  -- Sorted by an argument: every match, in order, here.
  each_member(candidates or ids, function(id)
    if all_hit(id, checks) then
      local t = tuple(id, nil)
      if after_marker(id, t) then found[#found + 1] = id end
    end
  end)
else
  local source = zkey(primary_key[1])
  if candidates then
    -- The candidates in the order of the first sort key.
    source = temp()
    redis.call('ZINTERSTORE', source, 2, candidates, zkey(primary_key[1]), 'WEIGHTS', 0, 1)
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
  local last_score = nil
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
      if after_marker(id, t) and all_hit(id, checks) then
        found[#found + 1] = id
        last_score = score
      end
    end
    start = start + batch_size
  end
end
cleanup()

table.sort(found, function(a, b) return order_cmp(a, tuples[a], b, tuples[b]) < 0 end)
local out = {'page'}
for i = 1, math.min(#found, q.limit) do
  out[#out + 1] = redis.call('HGET', runs, found[i])
end
return out
