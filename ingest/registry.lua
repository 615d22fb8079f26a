-- Write-side checks, state update and XADD of registry events, as one atomic step.
--
-- KEYS[1] stream of the registry shard, KEYS[2] its tail (newest appended id), KEYS[3] the
-- "registry loaded" marker, KEYS[4..] registered-model hashes (see constants.py).
-- ARGV[1] msgpack header {ops}; ARGV[2..] entries. Ops (see registry_commands.py) name their
-- keys by index into KEYS; they are checked in order against this call's own changes, and
-- nothing is written unless every op passes.
-- Replies: {'ok', id...} | {'missing'} (marker absent: load the model first) | {'err', code, ...}

if redis.call('EXISTS', KEYS[3]) == 0 then return {'missing'} end

local hdr = cmsgpack.unpack(ARGV[1])

-- HSET in slices: Lua's unpack has a stack limit.
local function hset_all(key, args)
  for i = 1, #args, 1000 do
    redis.call('HSET', key, unpack(args, i, math.min(i + 999, #args)))
  end
end
local state, touched = {}, {}

-- state[k] = false (no such model) or {top = n, live = {[n] = true}}
local function get(k)
  if state[k] == nil then
    local flat = redis.call('HGETALL', KEYS[k])
    if #flat == 0 then
      state[k] = false
    else
      local s = {top = 0, live = {}}
      for i = 1, #flat, 2 do
        local f, v = flat[i], flat[i + 1]
        if f == 'top' then
          s.top = tonumber(v)
        elseif string.sub(f, 1, 2) == 'v:' then
          s.live[tonumber(string.sub(f, 3))] = true
        end
      end
      state[k] = s
    end
  end
  return state[k]
end

local function put(k, s)
  state[k] = s
  touched[k] = true
end

local handlers = {}

handlers.mc = function(op)
  if get(op[2]) then return {'err', 'rm_exists', op[3]} end
  put(op[2], {top = 0, live = {}})
end

handlers.mr = function(op)
  local s = get(op[2])
  if not s then return {'err', 'rm_missing', op[3]} end
  if op[2] ~= op[4] then
    if get(op[4]) then return {'err', 'rename_exists', op[5]} end
    put(op[4], s)
    put(op[2], false)
  end
end

handlers.md = function(op)
  if not get(op[2]) then return {'err', 'rm_missing', op[3]} end
  put(op[2], false)
end

handlers.ma = function(op)
  if not get(op[2]) then return {'err', 'rm_missing', op[3]} end
end

handlers.vc = function(op)
  local s = get(op[2])
  if not s then return {'err', 'rm_missing', op[3]} end
  local version = tonumber(op[4])
  if s.top + 1 ~= version then return {'err', 'version_taken', op[3], tostring(s.top)} end
  s.top = version
  s.live[version] = true
  put(op[2], s)
end

local function live(op)
  local s = get(op[2])
  if not s or not s.live[tonumber(op[4])] then
    return nil, {'err', 'mv_missing', op[3], tostring(op[4])}
  end
  return s, nil
end

handlers.va = function(op)
  local _, err = live(op)
  return err
end

handlers.vd = function(op)
  local s, err = live(op)
  if err then return err end
  s.live[tonumber(op[4])] = nil
  put(op[2], s)
end

for _, op in ipairs(hdr.ops) do
  local err = handlers[op[1]](op)
  if err then return err end
end

for k in pairs(touched) do
  local key = KEYS[k]
  redis.call('DEL', key)
  local s = state[k]
  if s then
    local args = {'top', tostring(s.top)}
    for version in pairs(s.live) do
      args[#args + 1] = 'v:' .. version
      args[#args + 1] = '1'
    end
    hset_all(key, args)
  end
end

local reply = {'ok'}
for i = 2, #ARGV do
  reply[#reply + 1] = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
redis.call('SET', KEYS[2], reply[#reply])
return reply
