-- Load write-side model state read from PostgreSQL, setting only keys that are absent:
-- whatever the append script recorded meanwhile is newer than the read tables.
--
-- ARGV[1] msgpack list of items, keys by index into KEYS:
--   {'h', key idx, ttl, field, value, ...}  hash, written whole when the key is absent
--   {'s', key idx, ttl, value}              string, SET NX
--   {'m', key idx, member, ...}             set, union (no TTL)
local items = cmsgpack.unpack(ARGV[1])
for _, it in ipairs(items) do
  local key = KEYS[it[2]]
  if it[1] == 'h' then
    if redis.call('EXISTS', key) == 0 then
      -- HSET in slices: Lua's unpack has a stack limit.
      local i = 4
      while i <= #it do
        local args = {}
        for j = i, math.min(i + 999, #it) do args[#args + 1] = it[j] end
        redis.call('HSET', key, unpack(args))
        i = i + 1000
      end
      redis.call('EXPIRE', key, it[3])
    end
  elseif it[1] == 's' then
    redis.call('SET', key, it[4], 'NX', 'EX', it[3])
  elseif it[1] == 'm' then
    local i = 3
    while i <= #it do
      local args = {}
      for j = i, math.min(i + 999, #it) do args[#args + 1] = it[j] end
      redis.call('SADD', key, unpack(args))
      i = i + 1000
    end
  end
end
return #items
