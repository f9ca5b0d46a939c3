-- reauthenticate: record a fresh credential check on a live session
-- (auth_time = NOW, aal as proven), checked and written in one script.
--
-- KEYS[1] the session key. ARGV[5] aal.
-- Replies: {'absent'} (missing or not live) | {'ok', hash}.
local SKEY, AAL = KEYS[1], ARGV[5]
local h = load(SKEY)
if not h or not is_live(h) then
  return { 'absent' }
end
redis.call('HSET', SKEY, 'auth_time', n2s(NOW), 'aal', AAL)
return { 'ok', redis.call('HGETALL', SKEY) }
