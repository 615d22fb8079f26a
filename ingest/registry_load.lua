-- Load the registry's write-side model read from PostgreSQL, unless it is already loaded.
--
-- KEYS[1] the "registry loaded" marker, KEYS[2..] registered-model hashes.
-- ARGV[i - 1] for KEYS[i]: msgpack {top, live version, ...}.
-- No registry append succeeds while the marker is absent, so what PostgreSQL held once the
-- projector caught up is the whole state; a second loader finds the marker and does nothing.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
-- HSET in slices: Lua's unpack has a stack limit.
local function hset_all(key, args)
  for i = 1, #args, 1000 do
    redis.call('HSET', key, unpack(args, i, math.min(i + 999, #args)))
  end
end
for i = 2, #KEYS do
  local item = cmsgpack.unpack(ARGV[i - 1])
  redis.call('DEL', KEYS[i])
  local args = {'top', tostring(item[1])}
  for j = 2, #item do
    args[#args + 1] = 'v:' .. item[j]
    args[#args + 1] = '1'
  end
  hset_all(KEYS[i], args)
end
redis.call('SET', KEYS[1], '1')
return 1
