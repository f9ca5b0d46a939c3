-- revoke_all: end every unrevoked session (after a backup restore), each
-- with its revocation row, in one script. It walks the `active` index, so it
-- costs O(sessions) and blocks Redis meanwhile: an operator's command, not a
-- request path.
--
-- KEYS[1] the active index. ARGV[5] reason. Reply: how many were revoked.
local REASON = ARGV[5]
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', ACTIVE, 0, -1)) do
  local h = load(skey(sid))
  if h then
    if revoke(sid, h, REASON) then
      n = n + 1
    end
  else
    redis.call('ZREM', ACTIVE, sid)
  end
end
return n
