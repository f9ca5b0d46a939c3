-- revoke_user: end every unrevoked session of a user except one, each with
-- its revocation row, in one script (a login that lands meanwhile is either
-- before, and revoked, or after, and kept; never half).
--
-- Expired but unrevoked sessions are revoked too: a revocation row must
-- exist for every session whose access tokens could still be in flight.
--
-- KEYS[1] the user's index. ARGV[5] user id, [6] sid to keep ('' = none),
-- [7] reason. Reply: {revoked sid, ...}.
local UID, KEEP_SID, REASON = ARGV[5], ARGV[6], ARGV[7]
local revoked = {}
for _, s in ipairs(user_sessions(UID, true)) do
  if s.sid ~= KEEP_SID and revoke(s.sid, s.h, REASON) then
    revoked[#revoked + 1] = s.sid
  end
end
return revoked
