-- Answer a run query on one shard from its query index (see index_update.lua): a page of
-- runs after a marker in the query's order, or the number of matches. Read-only except
-- for scratch keys under <tmp>, deleted before returning.
-- Returns {'page', summary JSON...} (at most limit, in order) or {'count', n}.
local base, runs, tmp = KEYS[1], KEYS[2], KEYS[3]
local q = cjson.decode(ARGV[1])
-- q.clauses: {neg, sets = {member...}, ranges = {{field, min, max, lo, lo_in, hi, hi_in}...},
--             scan = false | {field, arg, op, values, text}}: a run matches a clause when it
--             is in one of the sets or ranges or the scan holds, negated when neg.
-- q.sort: {{field, desc, text, unsorted, keyword, lexical}...} (unsorted: 'arg' an argument,
--          'text' a keyword without a sorted set, false; keyword: it has value sets, so it
--          can be walked value by value; lexical: it has a lexical index, <base>:l:<field>,
--          see index_update.lua), the run id last; q.limit; q.count;
-- q.marker: false | {id, id_score, classes = {...}, scores = {...}, texts = {...}} (one per
--          sort key)
-- q.walk_budget: how many runs a walk in sort order may expect to read before the planner
--             narrows the runs down with the index sets instead.
-- q.max_values, q.max_matching: has/gt/lt on a keyword field reads the field's values when
--             it has at most max_values, and joins their sets when at most max_matching match.
-- q.max_groups: a keyword sort key with at most this many values in the shard is walked value
--             by value.

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

-- Bytewise order. Lua's own string order follows the server's locale (strcoll): used
-- when that is bytewise for some telling pairs (the C locale, C.UTF-8), much faster than
-- comparing byte by byte here.
local native_order = ('B' < 'a') and ('Z' < '_') and ('_' < 'a') and ('-' < '0')
  and ('a' < '\195\169') and ('A b' < 'Ab') and ('ab' < 'a\255') and ('a\0b' < 'a\0c')
  and ('a' < 'a\0') and not ('a\0' < 'a')
local function bytes_cmp(a, b)
  if a == b then return 0 end
  if native_order then return a < b and -1 or 1 end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return #a < #b and -1 or 1
end

-- runstream.query.text_score: the first 6 bytes as a number.
local function text_score(text)
  local n = 0
  for i = 1, 6 do n = n * 256 + (string.byte(text, i) or 0) end
  return n
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

-- The run a walk is at and its score on the walked key (a range on it needs no lookup).
local walked_field, walked_id, walked_score = nil, nil, nil

local function clause_hit(id, c)
  local hit = false
  for _, member in ipairs(c.sets) do
    if redis.call('SISMEMBER', skey(member), id) == 1 then hit = true break end
  end
  if not hit then
    for _, r in ipairs(c.ranges) do
      local score = (r[1] == walked_field and walked_id == id) and walked_score
        or redis.call('ZSCORE', zkey(r[1]), id)
      if in_range(score, r) then hit = true break end
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
-- The score of the value of a keyword sort key walked value by value (its text_score).
local group_score = {}
-- known_score: the run's score on sort key `level`, read while walking that key.
local function tuple(id, level, known_score)
  local t = tuples[id]
  if t == nil then
    t = {c = {}, n = {}}
    for i, k in ipairs(q.sort) do
      if k[4] == 'text' then
        t.c[i], t.n[i] = 1, 0 -- a keyword without a sorted set: its text decides
      else
        local score = (i == level and known_score) or group_score[i]
          or redis.call('ZSCORE', zkey(k[1]), id)
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

local function sets_only_clause(c) return #c.ranges == 0 end

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
-- Smallest first; after it the set clauses before the ranges (sets intersect as sets).
table.sort(narrowing, function(a, b) return a[2] < b[2] end)
do
  local head, sets, ranges = {narrowing[1]}, {}, {}
  for i = 2, #narrowing do
    local list = sets_only_clause(narrowing[i][1]) and sets or ranges
    list[#list + 1] = narrowing[i]
  end
  if #narrowing > 0 then
    narrowing = head
    for _, e in ipairs(sets) do narrowing[#narrowing + 1] = e end
    for _, e in ipairs(ranges) do narrowing[#narrowing + 1] = e end
  end
end

-- A keyword sort key with few values in the shard is walked value by value, in its
-- order: each value's runs (one index set) are then ordered by the next keys, so a page
-- reads about as many runs as it shows instead of every run tied on the key's score.
local groups = {}
for i, k in ipairs(q.sort) do
  if k[5] and redis.call('SCARD', base .. ':v:' .. k[1]) <= q.max_groups then
    local values = redis.call('SMEMBERS', base .. ':v:' .. k[1])
    table.sort(values, function(a, b)
      local r = bytes_cmp(a, b)
      if k[2] then return r > 0 end
      return r < 0
    end)
    groups[i] = values
  end
end

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

-- Keys known to hold plain sets (the index's value sets and what S-commands stored):
-- intersecting sets with S-commands skips building sorted sets, several times cheaper.
local is_set = {}
local function set_key(member)
  local key = skey(member)
  is_set[key] = true
  return key
end
local function card(key)
  return redis.call(is_set[key] and 'SCARD' or 'ZCARD', key)
end
local function sets_only(c) return #c.ranges == 0 end

-- The runs of a clause on their own: a set's own key, else a scratch key.
local function clause_key(c)
  if #c.sets == 1 and #c.ranges == 0 then return set_key(c.sets[1]) end
  if #c.sets == 0 and #c.ranges == 0 then return temp() end -- no run: a key never written
  local parts = {}
  for _, member in ipairs(c.sets) do parts[#parts + 1] = skey(member) end
  if #c.ranges == 0 then
    local key = temp()
    redis.call('SUNIONSTORE', key, unpack(parts))
    is_set[key] = true
    return key
  end
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

-- The runs of set `from` that also match clause c, which has only sets: with S-commands.
local function narrow_set(from, c)
  local key = temp()
  is_set[key] = true
  if #c.sets == 0 then return c.neg and from or key end -- no run matches the clause itself
  if c.neg then
    local args = {key, from}
    for _, member in ipairs(c.sets) do args[#args + 1] = skey(member) end
    redis.call('SDIFFSTORE', unpack(args))
  elseif #c.sets == 1 then
    redis.call('SINTERSTORE', key, from, skey(c.sets[1]))
  else
    -- in: each value's runs among `from`, then together (from is the smaller side).
    local parts = {}
    for _, member in ipairs(c.sets) do
      local part = temp()
      redis.call('SINTERSTORE', part, from, skey(member))
      parts[#parts + 1] = part
    end
    redis.call('SUNIONSTORE', key, unpack(parts))
  end
  return key
end

-- The runs of `from` that also match clause c (nil: c is left to the run-by-run test).
local function narrow(from, c)
  if is_set[from] and sets_only(c) then return narrow_set(from, c) end
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
if q.count and #narrowing == 0 and #others == 1 and others[1].neg and not others[1].scan
  and #others[1].ranges == 0 then
  -- Every run but those in some sets.
  local c = others[1]
  local n = redis.call('SCARD', skey(c.sets[1]))
  if #c.sets > 1 then
    local key = temp()
    local args = {key}
    for _, member in ipairs(c.sets) do args[#args + 1] = skey(member) end
    n = redis.call('SUNIONSTORE', unpack(args))
  end
  cleanup()
  return {'count', total - n}
end

-- The runs the index clauses and the value sets of group_members (field=value) leave
-- (nil: every run), and the clauses to test run by run. The smallest index clause first,
-- then the sets (intersected as sets), then the ranges; for a page, a range that most of
-- the runs left pass is tested while walking instead (a walk reads few of them).
local function narrowed(group_members)
  local entries = {}
  for _, e in ipairs(narrowing) do entries[#entries + 1] = e end
  for _, member in ipairs(group_members or {}) do
    local c = {neg = false, sets = {member}, ranges = {}}
    entries[#entries + 1] = {c, redis.call('SCARD', skey(member))}
  end
  table.sort(entries, function(a, b) return a[2] < b[2] end)
  local ordered, ranges = {entries[1]}, {}
  for i = 2, #entries do
    if sets_only_clause(entries[i][1]) then
      ordered[#ordered + 1] = entries[i]
    else
      ranges[#ranges + 1] = entries[i]
    end
  end
  for _, e in ipairs(ranges) do ordered[#ordered + 1] = e end
  local candidates, checks = nil, {}
  if q.count and #entries == 0 then candidates = ids end
  for i, entry in ipairs(ordered) do
    local c, size = entry[1], entry[2]
    if candidates == nil then
      candidates = clause_key(c)
    elseif q.count and i == #ordered and #others == 0 and #checks == 0 and not c.neg
      and #c.sets == 0 and #c.ranges == 1 then
      -- Counting, a last range: its runs among the candidates are counted by score (no
      -- need to remove the others first).
      local r = c.ranges[1]
      local key = temp()
      redis.call('ZINTERSTORE', key, 2, candidates, zkey(r[1]), 'WEIGHTS', 0, 1)
      return key, checks, r
    elseif not q.count and not sets_only_clause(c) and is_set[candidates]
      and total > 0 and card(candidates) * size / total >= 3 * q.limit then
      checks[#checks + 1] = c
    else
      local next_key = narrow(candidates, c)
      if next_key then candidates = next_key else checks[#checks + 1] = c end
    end
  end
  for _, c in ipairs(others) do
    local next_key = (candidates and not c.scan) and narrow(candidates, c) or nil
    if next_key then candidates = next_key else checks[#checks + 1] = c end
  end
  return candidates, checks
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
  local candidates, checks, last_range = narrowed()
  local n = 0
  if last_range then
    n = redis.call('ZCOUNT', candidates, last_range[2], last_range[3])
  elseif #checks == 0 then
    n = card(candidates)
  else
    each_member(candidates, function(id) if all_hit(id, checks) then n = n + 1 end end)
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
local function full() return #found >= q.limit end

-- Appends runs in order, sorted among themselves (their keys before the level walked are
-- equal), to the page.
local function take(ids_here)
  table.sort(ids_here, function(a, b) return order_cmp(a, tuples[a], b, tuples[b]) < 0 end)
  for _, id in ipairs(ids_here) do found[#found + 1] = id end
end

-- Every match of cand (nil: every run) and checks, sorted here: for a key without a
-- sorted set in the query's order (an argument, a keyword with many values).
local function sort_all(level, cand, checks)
  local here = {}
  each_member(cand or ids, function(id)
    if all_hit(id, checks) and after_marker(id, tuple(id, 0, nil)) then
      here[#here + 1] = id
    end
  end)
  take(here)
end

-- Walks the sorted set of sort key `level` (past the keys: the run id) over cand and
-- checks, in the key's direction, until the page is full and the key's score changes.
-- on_marker: the keys before `level` are the marker's, so the walk starts at its score.
local function walk_sorted(level, cand, checks, on_marker)
  local k = q.sort[level]
  local field, desc = k and k[1] or 'id', (k and k[2]) or (not k and first_desc)
  local source = zkey(field)
  if cand then
    -- The candidates in the order of the key.
    source = temp()
    redis.call('ZINTERSTORE', source, 2, cand, zkey(field), 'WEIGHTS', 0, 1)
  end
  local start = 0
  if marker and on_marker then
    local ms = k and marker.scores[level] or marker.id_score
    if desc then
      start = redis.call('ZCOUNT', source, '(' .. ms, '+inf')
    else
      start = (ms == '-inf') and 0 or redis.call('ZCOUNT', source, '-inf', '(' .. ms)
    end
  end
  local here = {}
  local last_score = nil
  local batch_size = math.max(q.limit, 100)
  local done = false
  while not done do
    local args = {source, start, start + batch_size - 1}
    if desc then args[#args + 1] = 'REV' end
    args[#args + 1] = 'WITHSCORES'
    local batch = redis.call('ZRANGE', unpack(args))
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
      local id, score = batch[i], batch[i + 1]
      -- Past a full page, only runs tied with the last one on this key may still
      -- belong to it (a later key decides).
      if #found + #here >= q.limit and score ~= last_score then done = true break end
      walked_field, walked_id, walked_score = field, id, score
      -- The checks first: past the marker's place most runs are after it.
      if all_hit(id, checks) and after_marker(id, tuple(id, level, score)) then
        here[#here + 1] = id
        last_score = score
      end
    end
    start = start + batch_size
  end
  take(here)
end

-- The lexical index of a text sort key, when it holds every run of the shard (a store
-- written before lexical indexes has none until its runs are appended to or rebuilt): its
-- key, else nil.
local function lexical_index(k)
  if not (k and k[6]) then return nil end
  local key = base .. ':l:' .. k[1]
  if redis.call('ZCARD', key) ~= redis.call('ZCARD', zkey(k[1])) then return nil end
  return key
end

-- runstream.query.lex_prefix
local function lex_prefix(text) return (string.gsub(text, '%z', '\0\1')) .. '\0\0' end

-- Walks the lexical index of sort key `level` over checks, in the key's direction (members
-- in text order, then run id), until the page is full and the text changes: the runs it
-- reads are about the runs it shows. on_marker: start at the marker's text.
local function walk_lexical(level, key, checks, on_marker)
  local k = q.sort[level]
  local desc = k[2]
  local lo, hi = '-', '+'
  if marker and on_marker then
    local prefix = lex_prefix(marker.texts[level])
    if desc then hi = '(' .. prefix .. '\255' else lo = '[' .. prefix end
  end
  local here = {}
  local last_text = nil
  local batch_size = math.max(q.limit, 100)
  local done = false
  while not done do
    local batch
    if desc then
      batch = redis.call('ZRANGE', key, hi, lo, 'BYLEX', 'REV', 'LIMIT', 0, batch_size)
    else
      batch = redis.call('ZRANGE', key, lo, hi, 'BYLEX', 'LIMIT', 0, batch_size)
    end
    if #batch == 0 then break end
    for _, member in ipairs(batch) do
      local ends = string.find(member, '\0\0', 1, true)
      local text, id = string.sub(member, 1, ends - 1), string.sub(member, ends + 2)
      if #found + #here >= q.limit and text ~= last_text then done = true break end
      local value = string.gsub(text, '%z\1', '\0')
      if all_hit(id, checks) and after_marker(id, tuple(id, level, text_score(value))) then
        here[#here + 1] = id
        last_text = text
      end
    end
    local last = '(' .. batch[#batch]
    if desc then hi = last else lo = last end
    if #batch < batch_size then break end
  end
  take(here)
end

-- The runs of the query in the order of the sort keys from `level` on, appended to the
-- page until it is full. group_members: field=value of the keys before `level` (walked
-- value by value); share: the estimated share of all runs that match.
local function emit(level, group_members, on_marker, share)
  local k = q.sort[level]
  if k and groups[level] then
    for _, v in ipairs(groups[level]) do
      local here_marker, skip = false, false
      if marker and on_marker then
        local r = bytes_cmp(v, marker.texts[level])
        if k[2] then r = -r end
        skip, here_marker = r < 0, r == 0
      end
      local member = k[1] .. '=' .. v
      local size = skip and 0 or redis.call('SCARD', skey(member))
      if size > 0 then
        group_score[level] = text_score(v)
        local members = {}
        for _, m in ipairs(group_members) do members[#members + 1] = m end
        members[#members + 1] = member
        emit(level + 1, members, here_marker, share * (total > 0 and size / total or 0))
      end
      if full() then return end
    end
    return
  end
  -- Walk the key's sorted set and test each run, or narrow the runs down first? Walk
  -- when the clauses look loose enough to fill a page soon (assuming they are
  -- independent). A text key ties whole groups of runs (its score keeps 6 bytes of the
  -- text), so a walk may read all of them: narrow first whenever a clause can. An
  -- argument has no sorted set in the order of the query: its runs are sorted here.
  local sorts_all = k and k[4]
  local lexical = lexical_index(k)
  local text_ties = k and k[3] and k[1] ~= 'id' and not lexical
  local walk = not sorts_all and (total == 0 or share * q.walk_budget >= q.limit)
    and not (text_ties and (#narrowing > 0 or #group_members > 0))
  local cand, checks = nil, q.clauses
  if walk then
    checks = {}
    for _, c in ipairs(q.clauses) do checks[#checks + 1] = c end
    for _, m in ipairs(group_members) do
      checks[#checks + 1] = {neg = false, sets = {m}, ranges = {}}
    end
  else
    cand, checks = narrowed(group_members)
  end
  if sorts_all then
    sort_all(level, cand, checks)
  elseif walk and lexical then
    walk_lexical(level, lexical, checks, on_marker)
  else
    walk_sorted(level, cand, checks, on_marker)
  end
end

emit(1, {}, true, selectivity)
cleanup()
local out = {'page'}
for i = 1, math.min(#found, q.limit) do
  out[#out + 1] = redis.call('HGET', runs, found[i])
end
return out
