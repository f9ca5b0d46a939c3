-- Shared prelude, concatenated in front of every script (see lib.rs).
--
-- ARGV[1] key prefix, ARGV[2] store time (-1: read Redis TIME), ARGV[3]
-- revocation margin (s), ARGV[4] how long a session's key outlives its end
-- (s). Script-specific arguments start at ARGV[5].
--
-- Key layout (P = prefix):
--   P .. 's:' .. sid   hash, one session (fields: see lib.rs)
--   P .. 'u:' .. uid   sorted set, the user's sessions, score = last_seen_at
--   P .. 'active'      sorted set, every unrevoked session, score = the
--                      store time after which its key is no longer needed
--   P .. 'revocations' stream, revocation rows, entry id = '<seq>-0'
--   P .. 'revseq'      string, the last revocation sequence number
--   P .. 'revocations:wake'  pub/sub channel, a message per revocation row
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
if NOW < 0 then
  NOW = tonumber(redis.call('TIME')[1])
end
local MARGIN = tonumber(ARGV[3])
local KEEP = tonumber(ARGV[4])
local ACTIVE = P .. 'active'
local REVS = P .. 'revocations'
local REVSEQ = P .. 'revseq'

-- Integers as decimal strings (never '1.8e+09').
local function n2s(x)
  return string.format('%d', x)
end

local function skey(sid)
  return P .. 's:' .. sid
end

local function ukey(uid)
  return P .. 'u:' .. uid
end

-- An optional string argument: '' is none, '+value' is value.
local function opt(s)
  if s == '' then
    return nil
  end
  return string.sub(s, 2)
end

-- A session hash as a table, or nil when the key does not exist.
local function load(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local h = {}
  for i = 1, #flat, 2 do
    h[flat[i]] = flat[i + 1]
  end
  return h
end

local function num(h, field)
  local v = h[field]
  if v then
    return tonumber(v)
  end
  return nil
end

-- Not revoked and neither idle- nor absolutely expired at NOW.
local function is_live(h)
  if h.revoked_at then
    return false
  end
  if NOW >= tonumber(h.expires_at) then
    return false
  end
  local idle = num(h, 'idle_expires_at')
  if idle and NOW >= idle then
    return false
  end
  return true
end

-- The store time after which nothing reads the session any more: its end
-- (revocation, else the earlier of idle and absolute expiry) plus KEEP.
local function deadline(h)
  local e
  if h.revoked_at then
    e = tonumber(h.revoked_at)
  else
    e = tonumber(h.expires_at)
    local idle = num(h, 'idle_expires_at')
    if idle and idle < e then
      e = idle
    end
  end
  return e + KEEP
end

-- Sets the session key's TTL from its state, extends (never shortens) the
-- user index's TTL to cover it, and keeps the `active` index in step.
local function persist(sid, h)
  local d = deadline(h)
  local ttl = d - NOW
  if ttl < 1 then
    ttl = 1
  end
  redis.call('EXPIRE', skey(sid), n2s(ttl))
  local uk = ukey(h.user_id)
  local pttl = redis.call('PTTL', uk)
  if pttl == -1 or (pttl >= 0 and pttl < ttl * 1000) then
    redis.call('EXPIRE', uk, n2s(ttl))
  end
  if h.revoked_at then
    redis.call('ZREM', ACTIVE, sid)
  else
    redis.call('ZADD', ACTIVE, n2s(d), sid)
  end
end

-- Drops revocation rows from the head of the stream once they are past
-- not_after by more than the margin (nobody can need them); bounded work.
local trimmed = false
local function trim_rows()
  if trimmed then
    return
  end
  trimmed = true
  local head = redis.call('XRANGE', REVS, '-', '+', 'COUNT', 100)
  local dead = {}
  for _, entry in ipairs(head) do
    local fields = entry[2]
    local not_after
    for i = 1, #fields, 2 do
      if fields[i] == 'not_after' then
        not_after = tonumber(fields[i + 1])
      end
    end
    if not_after == nil or not_after + MARGIN > NOW then
      break
    end
    dead[#dead + 1] = entry[1]
  end
  if #dead > 0 then
    redis.call('XDEL', REVS, unpack(dead))
  end
end

-- Appends a revocation row. The sequence starts from Redis's clock in
-- microseconds, so a lost counter (a Redis without persistence restarting)
-- still continues above every sequence number handed out before.
local function add_row(sid, reason)
  trim_rows()
  if redis.call('EXISTS', REVSEQ) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', REVSEQ, n2s(tonumber(t[1]) * 1000000 + tonumber(t[2])))
  end
  local seq = redis.call('INCR', REVSEQ)
  redis.call('XADD', REVS, n2s(seq) .. '-0',
    'sid', sid, 'reason', reason, 'not_after', n2s(NOW + MARGIN))
  -- Wakes every Sesame instance's revocation feed (pub/sub is delivered
  -- after the script, which runs atomically).
  redis.call('PUBLISH', P .. 'revocations:wake', n2s(seq))
end

-- Revokes a session if it is not revoked yet (keeping the first reason),
-- writing its revocation row. Returns whether it did. Updates `h`.
local function revoke(sid, h, reason)
  if h.revoked_at then
    return false
  end
  h.revoked_at = n2s(NOW)
  h.revoke_reason = reason
  redis.call('HSET', skey(sid), 'revoked_at', h.revoked_at, 'revoke_reason', reason)
  add_row(sid, reason)
  persist(sid, h)
  return true
end

-- Every stored session of a user as {sid, h}, in index order. With
-- `prune`, index members whose key has expired are removed.
local function user_sessions(uid, prune)
  local uk = ukey(uid)
  local out = {}
  for _, sid in ipairs(redis.call('ZRANGE', uk, 0, -1)) do
    local h = load(skey(sid))
    if h then
      out[#out + 1] = { sid = sid, h = h }
    elseif prune then
      redis.call('ZREM', uk, sid)
    end
  end
  return out
end

-- A user's live sessions except `exclude`, least recently used first
-- (last_seen_at, then created_at, then id).
local function live_sorted(uid, exclude)
  local live = {}
  for _, s in ipairs(user_sessions(uid, false)) do
    if s.sid ~= exclude and is_live(s.h) then
      live[#live + 1] = s
    end
  end
  table.sort(live, function(a, b)
    local la, lb = tonumber(a.h.last_seen_at), tonumber(b.h.last_seen_at)
    if la ~= lb then
      return la < lb
    end
    local ca, cb = tonumber(a.h.created_at), tonumber(b.h.created_at)
    if ca ~= cb then
      return ca < cb
    end
    return a.sid < b.sid
  end)
  return live
end

-- ---------------------------------------------------------------------------
