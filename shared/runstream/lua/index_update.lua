-- Fragment (included by append, delete, index_put_batch): bring one run's entries in the
-- query index from its previous postings to new ones (runstream.query.postings), touching
-- only what changed. Index keys are built from the shard's index base key, so they share
-- the shard's hash tag: <base>:z:<field> sorted sets, <base>:s:<field>=<value> sets,
-- <base>:t, the hash run_id -> the run's texts (one JSON object), and <base>:p, the hash
-- run_id -> postings the next update compares with; and <base>:v:<field>, the values a
-- keyword field (or a label) has in some run of the shard, which lets lua/query.lua answer
-- has/gt/lt on them from the value sets; and <base>:l:<field>, the lexical index of a text
-- field with many values: score 0, members <lex prefix of the text><run_id> (postings' l:
-- field -> lex prefix, runstream.query.lex_prefix), read in text order by lua/query.lua.
-- new_postings '' removes the run from the index.

local function lex_key(base, field) return base .. ':l:' .. field end

-- A run joins or leaves the value set <base>:s:<field>=<value>, and the value joins or
-- leaves its field's values when the set is new or gone. Arguments have no such list (their
-- texts hide their types).
local function value_field(member)
  local eq = string.find(member, '=', 1, true)
  local field = string.sub(member, 1, eq - 1)
  if string.sub(field, 1, 5) == 'args.' then return nil end
  return field, string.sub(member, eq + 1)
end

local function set_add(base, member, run_id)
  local key = base .. ':s:' .. member
  redis.call('SADD', key, run_id)
  if redis.call('SCARD', key) == 1 then
    local field, value = value_field(member)
    if field then redis.call('SADD', base .. ':v:' .. field, value) end
  end
end

local function set_remove(base, member, run_id)
  local key = base .. ':s:' .. member
  redis.call('SREM', key, run_id)
  if redis.call('EXISTS', key) == 0 then
    local field, value = value_field(member)
    if field then redis.call('SREM', base .. ':v:' .. field, value) end
  end
end

-- The run's postings as last written ('' = none: the run left the index).
local function store_postings(postings_key, run_id, new_postings)
  if new_postings == '' then
    redis.call('HDEL', postings_key, run_id)
  else
    redis.call('HSET', postings_key, run_id, new_postings)
  end
end

local function index_update(base, run_id, new_postings)
  local postings_key = base .. ':p'
  local old_raw = redis.call('HGET', postings_key, run_id)
  if old_raw == new_postings then return end
  local empty = {z = {}, s = {}}
  local old = old_raw and cjson.decode(old_raw) or empty
  local new = new_postings ~= '' and cjson.decode(new_postings) or empty
  local old_l, new_l = old.l or {}, new.l or {} -- postings from before lexical indexes: none
  for field, prefix in pairs(old_l) do
    if new_l[field] ~= prefix then redis.call('ZREM', lex_key(base, field), prefix .. run_id) end
  end
  for field, prefix in pairs(new_l) do
    if old_l[field] ~= prefix then redis.call('ZADD', lex_key(base, field), 0, prefix .. run_id) end
  end
  for field, _ in pairs(old.z) do
    if new.z[field] == nil then redis.call('ZREM', base .. ':z:' .. field, run_id) end
  end
  for field, score in pairs(new.z) do
    if old.z[field] ~= score then redis.call('ZADD', base .. ':z:' .. field, score, run_id) end
  end
  local keep = {}
  for _, member in ipairs(new.s) do keep[member] = true end
  local had = {}
  for _, member in ipairs(old.s) do
    had[member] = true
    if not keep[member] then set_remove(base, member, run_id) end
  end
  for _, member in ipairs(new.s) do
    if not had[member] then set_add(base, member, run_id) end
  end
  local old_t, new_t = old.t or '', new.t or ''
  if type(old_t) == 'table' then
    -- Postings from before the texts were one object: a hash per field.
    for field, _ in pairs(old_t) do redis.call('HDEL', base .. ':t:' .. field, run_id) end
    old_t = ''
  end
  if old_t ~= new_t then
    if new_t == '' then
      redis.call('HDEL', base .. ':t', run_id)
    else
      redis.call('HSET', base .. ':t', run_id, new_t)
    end
  end
  store_postings(postings_key, run_id, new_postings)
end

-- The same change as index_update, computed by the caller from the postings it last wrote
-- for the run (based_on, '' = none): valid only while those are still the stored ones, and
-- then it saves decoding both postings and comparing every entry. ops: a JSON array of
-- triples (op, field or member, value): za/zr sorted set add/remove, sa/sr value set
-- add/remove, ta/tr the run's texts set (value)/delete, la/lr lexical index add/remove
-- (value: the lex prefix). ops '' (the caller knows nothing) or other stored
-- postings: index_update does it all.
local function index_apply(base, run_id, new_postings, based_on, ops)
  local postings_key = base .. ':p'
  if ops == '' or (redis.call('HGET', postings_key, run_id) or '') ~= based_on then
    return index_update(base, run_id, new_postings)
  end
  if based_on == new_postings then return end
  local list = cjson.decode(ops)
  for i = 1, #list, 3 do
    local op, name, value = list[i], list[i + 1], list[i + 2]
    if op == 'za' then redis.call('ZADD', base .. ':z:' .. name, value, run_id)
    elseif op == 'zr' then redis.call('ZREM', base .. ':z:' .. name, run_id)
    elseif op == 'sa' then set_add(base, name, run_id)
    elseif op == 'sr' then set_remove(base, name, run_id)
    elseif op == 'ta' then redis.call('HSET', base .. ':t', run_id, value)
    elseif op == 'tr' then redis.call('HDEL', base .. ':t', run_id)
    elseif op == 'la' then redis.call('ZADD', lex_key(base, name), 0, value .. run_id)
    elseif op == 'lr' then redis.call('ZREM', lex_key(base, name), value .. run_id)
    end
  end
  store_postings(postings_key, run_id, new_postings)
end
