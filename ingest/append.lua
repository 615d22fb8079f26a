-- Write-side checks, model update and XADD for one shard, as one atomic step.
--
-- KEYS[1] stream, KEYS[2] idempotency key (or the stream again), KEYS[3] the shard's tail
-- (newest appended id, which reads catch up to), KEYS[4..] model keys.
-- ARGV[1] msgpack header {ttl, idem, idem_ttl, dexp, dset, nprefix, dry, ops}; ARGV[2..]
-- entries (none when dry = 1: check only, write nothing).
-- Ops (see commands.py) name their keys by index into KEYS. Every read goes through an
-- overlay of this call's own writes, and nothing is written unless every op passes, so a
-- refused request leaves the model and the stream as they were.
-- Replies: {'ok', id...} | {'dup', 'ids'} | {'missing', runs, exps, names} | {'err', code, ...}

local hdr = cmsgpack.unpack(ARGV[1])
local ttl = tonumber(hdr.ttl)

if hdr.idem == 1 then
  local prev = redis.call('GET', KEYS[2])
  if prev then return {'dup', prev} end
end

local dexp = {}
for _, id in ipairs(hdr.dexp) do dexp[id] = true end

local hv, ex, sv = {}, {}, {}
local writes, touched = {}, {}

local function exists(k)
  if ex[k] == nil then ex[k] = redis.call('EXISTS', k) == 1 end
  return ex[k]
end
local function hget(k, f)
  local t = hv[k]
  if not t then t = {}; hv[k] = t end
  local v = t[f]
  if v == nil then v = redis.call('HGET', k, f); t[f] = v end
  return v
end
local function hset(k, f, v)
  hget(k, f)
  hv[k][f] = v
  ex[k] = true
  touched[k] = true
  writes[#writes + 1] = {'HSET', k, f, v}
end
local function sget(k)
  if sv[k] == nil then sv[k] = redis.call('GET', k) end
  return sv[k]
end
local function sset(k, v)
  sv[k] = v
  touched[k] = true
  writes[#writes + 1] = {'SET', k, v}
end
local function sdel(k)
  sv[k] = false
  touched[k] = nil
  writes[#writes + 1] = {'DEL', k}
end

local missing_runs, missing_exps, missing_names = {}, {}, {}
local missing = false

-- Run ops: {kind, state key idx, params key idx, known_absent, run_id, ...}
local function run_state(op)
  local sk, pk = KEYS[op[2]], KEYS[op[3]]
  local has_s, has_p = exists(sk), exists(pk)
  if has_s and has_p then
    touched[sk] = true; touched[pk] = true
    return 'ok'
  end
  if op[4] == 1 then
    if has_s then
      hset(pk, '', '')
      touched[sk] = true
      return 'ok'
    end
    return 'absent'
  end
  missing_runs[#missing_runs + 1] = op[5]
  missing = true
  return 'missing'
end

-- Experiment ops: {kind, state key idx, known_absent, experiment_id, ...}
local function exp_state(op)
  local sk = KEYS[op[2]]
  if exists(sk) then touched[sk] = true; return 'ok' end
  if op[3] == 1 then return 'absent' end
  missing_exps[#missing_exps + 1] = op[4]
  missing = true
  return 'missing'
end

local function name_owner(op, ki, ka)
  local v = sget(KEYS[op[ki]])
  if v then return v end
  if op[ka] == 1 then return false end
  missing_names[#missing_names + 1] = op[ka + 1]
  missing = true
  return nil
end

local function active_run(op)
  local st = run_state(op)
  if st == 'missing' then return nil end
  if st == 'absent' then return {'err', 'run_missing', op[5]} end
  local sk = KEYS[op[2]]
  if hget(sk, 'life') == 'deleted' or dexp[hget(sk, 'exp')] then
    return {'err', 'run_deleted', op[5]}
  end
  return nil
end

local handlers = {}

handlers.rc = function(op)
  local st = run_state(op)
  if st == 'ok' then return {'err', 'run_exists', op[5]} end
  if st == 'missing' then return nil end
  local sk, pk = KEYS[op[2]], KEYS[op[3]]
  hset(sk, 'exp', op[6])
  hset(sk, 'life', 'active')
  hset(pk, '', '')
  return nil
end

handlers.ra = active_run

local function set_life(life)
  return function(op)
    local st = run_state(op)
    if st == 'absent' then return {'err', 'run_missing', op[5]} end
    if st == 'ok' then hset(KEYS[op[2]], 'life', life) end
    return nil
  end
end
handlers.rd = set_life('deleted')
handlers.rr = set_life('active')

handlers.p = function(op)
  local err = active_run(op)
  if err or missing then return err end
  local pk = KEYS[op[3]]
  -- op[6] says whether the request logged one param (MLflow words the error differently)
  local conflicts = {'err', 'param_conflict', op[5], op[6]}
  for i = 7, #op, 2 do
    local k, v = op[i], op[i + 1]
    local old = hget(pk, k)
    if old then
      if old ~= v then
        conflicts[#conflicts + 1] = k
        conflicts[#conflicts + 1] = old
        conflicts[#conflicts + 1] = v
      end
    else
      hset(pk, k, v)
    end
  end
  if #conflicts > 4 then return conflicts end
  return nil
end

-- {'ec', state idx, 1, experiment_id, name key idx, name known_absent, name, artifact_location}
handlers.ec = function(op)
  local owner = name_owner(op, 5, 6)
  if owner == nil then return nil end
  if owner then return {'err', 'name_exists', op[7]} end
  local sk = KEYS[op[2]]
  sset(KEYS[op[5]], op[4])
  hset(sk, 'name', op[7])
  hset(sk, 'life', 'active')
  hset(sk, 'art', op[8])
  return nil
end

-- {'er', state idx, known_absent, experiment_id, name key idx, name known_absent, new name}
handlers.er = function(op)
  local st = exp_state(op)
  local owner = name_owner(op, 5, 6)
  if st == 'missing' or owner == nil then return nil end
  if st == 'absent' then return {'err', 'exp_missing', op[4]} end
  local sk = KEYS[op[2]]
  if hget(sk, 'life') ~= 'active' then return {'err', 'exp_rename_inactive', op[4]} end
  if owner and owner ~= op[4] then return {'err', 'rename_exists', op[7]} end
  local old = hget(sk, 'name')
  if old and old ~= op[7] then
    local old_key = hdr.nprefix .. old
    if sget(old_key) == op[4] then sdel(old_key) end
  end
  sset(KEYS[op[5]], op[4])
  hset(sk, 'name', op[7])
  return nil
end

local set_changes = {}
local function exp_life(from, to, change)
  return function(op)
    local st = exp_state(op)
    if st == 'missing' then return nil end
    local sk = KEYS[op[2]]
    if st == 'absent' or hget(sk, 'life') ~= from then return {'err', 'exp_missing', op[4]} end
    hset(sk, 'life', to)
    set_changes[#set_changes + 1] = {change, op[4]}
    return nil
  end
end
handlers.ed = exp_life('active', 'deleted', 'SADD')
handlers.eu = exp_life('deleted', 'active', 'SREM')

handlers.ea = function(op)
  local st = exp_state(op)
  if st == 'missing' then return nil end
  if st == 'absent' then return {'err', 'exp_missing', op[4]} end
  if hget(KEYS[op[2]], 'life') ~= 'active' then return {'err', 'exp_deleted', op[4]} end
  return nil
end

for _, op in ipairs(hdr.ops) do
  local err = handlers[op[1]](op)
  -- After a missing key, later verdicts may rest on state not loaded yet: only collect.
  if err and not missing then return err end
end
if missing then return {'missing', missing_runs, missing_exps, missing_names} end
-- A check-only call (a request spanning shards checks every shard before any appends).
if hdr.dry == 1 then return {'ok'} end

for _, w in ipairs(writes) do redis.call(unpack(w)) end
for k in pairs(touched) do redis.call('EXPIRE', k, ttl) end
-- The deleted set is only maintained once loaded (its "" member); before that the next
-- reader loads it whole from PostgreSQL.
if #set_changes > 0 and redis.call('SISMEMBER', hdr.dset, '') == 1 then
  for _, ch in ipairs(set_changes) do redis.call(ch[1], hdr.dset, ch[2]) end
end

local reply = {'ok'}
for i = 2, #ARGV do
  reply[#reply + 1] = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
redis.call('SET', KEYS[3], reply[#reply])
if hdr.idem == 1 then
  redis.call('SET', KEYS[2], table.concat(reply, ',', 2), 'EX', tonumber(hdr.idem_ttl))
end
return reply
