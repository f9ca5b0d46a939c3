-- revoke: end one session if it is not revoked yet, keeping the first
-- reason, and write its revocation row, in one script (the check and the
-- write cannot be separated, so a session gets exactly one row).
--
-- KEYS[1] the session key. ARGV[5] sid, [6] reason.
-- Replies: {'absent'} | {'ok', hash} (the session as it now is).
local SKEY, SID, REASON = KEYS[1], ARGV[5], ARGV[6]
local h = load(SKEY)
if not h then
  return { 'absent' }
end
revoke(SID, h, REASON)
return { 'ok', redis.call('HGETALL', SKEY) }
