-- rotate: classify a presented refresh token exactly as
-- sesame_core::rotation::decide does, and apply the decision, in one script.
--
-- KEYS[1] the session key.
-- ARGV[5] sid, [6] presented generation, [7] SHA-256 of its secret (hex),
-- [8] of its successor (hex), [9] of the request's user agent (hex),
-- [10] channel ('cookie' | 'body'), [11] grace (s), [12] late-retry window
-- (s), [13] grace_max_answers, [14] idle TTL (s, '' = no idle expiry),
-- [15] '1' if reuse revokes every session of the user.
--
-- Replies: {'not_found'} | {'revoked', reason} | {'expired'} |
-- {'transport_mismatch'} | {'stale'} | {'rollback'} | {'rotated', hash} |
-- {'grace', hash} | {'reused', class, hash, {revoked sid, ...}}, where hash
-- is the session's HGETALL (after the rotation; before the revocation).
--
-- No other command runs while a script runs, so the row cannot change
-- between the read and the write: there is never a lost race, and `decide`
-- is applied with lost_race = false.
local SKEY = KEYS[1]
local SID = ARGV[5]
local T = tonumber(ARGV[6])
local SECRET, SUCC, UA, CHANNEL = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local GRACE, LATE, GMAX = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local IDLE = nil
if ARGV[14] ~= '' then
  IDLE = tonumber(ARGV[14])
end
local REUSE_USER = ARGV[15] == '1'

local h = load(SKEY)
if not h then
  return { 'not_found' }
end

-- sesame_core::rotation::decide, rule for rule and in the same order.
local function decide()
  -- Revocation and expiry come first, on every path.
  if h.revoked_at then
    return 'revoked'
  end
  local idle = num(h, 'idle_expires_at')
  if NOW >= tonumber(h.expires_at) or (idle and NOW >= idle) then
    return 'expired'
  end
  local refresh_in_cookie = h.transport ~= 'bearer'
  if (CHANNEL == 'cookie') ~= refresh_in_cookie then
    return 'transport_mismatch'
  end
  local g = tonumber(h.gen)
  if T == g then
    if SECRET == h.cur then
      return 'rotate'
    end
    return 'rollback'
  end
  if T > g then
    return 'rollback'
  end
  if T + 1 < g then
    return 'reuse', 'likely_theft'
  end
  -- The parent of the current generation.
  if not h.prev or SECRET ~= h.prev or SUCC ~= h.cur then
    return 'rollback'
  end
  if not h.rotated_ua_hash or h.rotated_ua_hash ~= UA then
    return 'reuse', 'likely_theft'
  end
  local age = NOW - tonumber(h.rotated_at)
  local in_grace = age < GRACE
  if in_grace and tonumber(h.grace_answers) < GMAX then
    return 'grace'
  end
  if not in_grace and age < LATE then
    return 'stale'
  end
  return 'reuse', 'likely_slow_client'
end

local decision, class = decide()

if decision == 'revoked' then
  return { 'revoked', h.revoke_reason or '' }
elseif decision == 'expired' or decision == 'transport_mismatch'
    or decision == 'stale' or decision == 'rollback' then
  return { decision }
elseif decision == 'rotate' then
  local fields = {
    'gen', n2s(tonumber(h.gen) + 1),
    'prev', h.cur,
    'cur', SUCC,
    'rotated_at', n2s(NOW),
    'rotated_ua_hash', UA,
    'grace_answers', '0',
    'last_seen_at', n2s(NOW),
  }
  if IDLE then
    local idle = NOW + IDLE
    local exp = tonumber(h.expires_at)
    if idle > exp then
      idle = exp
    end
    fields[#fields + 1] = 'idle_expires_at'
    fields[#fields + 1] = n2s(idle)
  else
    redis.call('HDEL', SKEY, 'idle_expires_at')
  end
  redis.call('HSET', SKEY, unpack(fields))
  redis.call('ZADD', ukey(h.user_id), n2s(NOW), SID)
  persist(SID, load(SKEY))
  return { 'rotated', redis.call('HGETALL', SKEY) }
elseif decision == 'grace' then
  local before = redis.call('HGETALL', SKEY)
  redis.call('HINCRBY', SKEY, 'grace_answers', 1)
  return { 'grace', before }
else -- reuse
  local before = redis.call('HGETALL', SKEY)
  local targets
  if REUSE_USER then
    targets = live_sorted(h.user_id, nil)
  else
    targets = { { sid = SID, h = h } }
  end
  local revoked = {}
  for _, s in ipairs(targets) do
    if revoke(s.sid, s.h, 'reuse_detected') then
      revoked[#revoked + 1] = s.sid
    end
  end
  return { 'reused', class, before, revoked }
end
