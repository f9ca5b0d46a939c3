-- list: the store time and every stored session of a user, in one
-- read-only round trip (the caller filters and orders).
--
-- KEYS[1] the user's index. Reply: {now, hash, hash, ...}.
local out = { n2s(NOW) }
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local flat = redis.call('HGETALL', skey(sid))
  if #flat > 0 then
    out[#out + 1] = flat
  end
end
return out
