-- set_claims: replace the application claims of every live session of a
-- user (they reach access tokens at the next refresh).
--
-- KEYS[1] the user's index. ARGV[5] user id, [6] claims (JSON object).
-- Reply: how many sessions changed.
local UID, CLAIMS = ARGV[5], ARGV[6]
local n = 0
for _, s in ipairs(user_sessions(UID, false)) do
  if is_live(s.h) then
    redis.call('HSET', skey(s.sid), 'claims', CLAIMS)
    n = n + 1
  end
end
return n
