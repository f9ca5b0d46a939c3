-- create: end the session this one replaces, enforce the per-user cap
-- (evicting the least recently used, or refusing), and insert, in one
-- script: no other login of the same user can interleave, so concurrent
-- logins under a cap of N end with exactly N live sessions.
--
-- KEYS[1] the new session's key, KEYS[2] its user's index.
-- ARGV[5] sid, [6] user id, [7] transport, [8] SHA-256 of generation 0's
-- secret (hex), [9] SHA-256 of the login's user agent (hex), [10] refresh
-- key version, [11] idle TTL (s, '' = none), [12] max age (s), [13] aal,
-- [14] ip ('' = none, '+ip'), [15] user agent (likewise), [16] claims
-- (JSON object), [17] cap ('' = none), [18] '1' = evict the least recently
-- used at the cap ('0' = refuse), [19] sid of the session it replaces ('').
--
-- Replies: {'conflict'} (the id exists) | {'limit'} (refused; nothing was
-- written) | {'created', hash, {revoked sid, ...}}.
local SKEY, UKEY = KEYS[1], KEYS[2]
local SID, UID, TRANSPORT = ARGV[5], ARGV[6], ARGV[7]
local FIRST, UAH, KEY_VER = ARGV[8], ARGV[9], ARGV[10]
local IDLE = nil
if ARGV[11] ~= '' then
  IDLE = tonumber(ARGV[11])
end
local MAX_AGE, AAL = tonumber(ARGV[12]), ARGV[13]
local IP, AGENT, CLAIMS = opt(ARGV[14]), opt(ARGV[15]), ARGV[16]
local CAP = nil
if ARGV[17] ~= '' then
  CAP = tonumber(ARGV[17])
end
local EVICT = ARGV[18] == '1'
local REPLACES = ARGV[19]

if redis.call('EXISTS', SKEY) == 1 then
  return { 'conflict' }
end

-- Decide everything before the first write, so a refusal writes nothing.
local replaced = nil
if REPLACES ~= '' then
  local rh = load(skey(REPLACES))
  if rh and not rh.revoked_at then
    replaced = rh
  end
end
local evict = {}
if CAP then
  local max = CAP
  if max < 1 then
    max = 1
  end
  -- The replaced session no longer counts: it ends in this same script.
  local exclude = nil
  if replaced then
    exclude = REPLACES
  end
  local live = live_sorted(UID, exclude)
  if #live >= max then
    if not EVICT then
      return { 'limit' }
    end
    for i = 1, #live + 1 - max do
      evict[#evict + 1] = live[i]
    end
  end
end

local revoked = {}
if replaced and revoke(REPLACES, replaced, 'replaced') then
  revoked[#revoked + 1] = REPLACES
end
for _, s in ipairs(evict) do
  if revoke(s.sid, s.h, 'evicted') then
    revoked[#revoked + 1] = s.sid
  end
end

local exp = NOW + MAX_AGE
local fields = {
  'id', SID,
  'user_id', UID,
  'transport', TRANSPORT,
  'gen', '0',
  'cur', FIRST,
  'rotated_at', n2s(NOW),
  'rotated_ua_hash', UAH,
  'grace_answers', '0',
  'key_ver', KEY_VER,
  'created_at', n2s(NOW),
  'last_seen_at', n2s(NOW),
  'expires_at', n2s(exp),
  'auth_time', n2s(NOW),
  'aal', AAL,
  'claims', CLAIMS,
}
if IDLE then
  local idle = NOW + IDLE
  if idle > exp then
    idle = exp
  end
  fields[#fields + 1] = 'idle_expires_at'
  fields[#fields + 1] = n2s(idle)
end
if IP then
  fields[#fields + 1] = 'ip'
  fields[#fields + 1] = IP
end
if AGENT then
  fields[#fields + 1] = 'user_agent'
  fields[#fields + 1] = AGENT
end
redis.call('HSET', SKEY, unpack(fields))
redis.call('ZADD', UKEY, n2s(NOW), SID)
persist(SID, load(SKEY))
-- Forget index entries whose keys are gone (bounded by logins).
redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', '(' .. n2s(NOW))
return { 'created', redis.call('HGETALL', SKEY), revoked }
