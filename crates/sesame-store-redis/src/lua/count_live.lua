-- count_live: how many sessions are live (unrevoked, unexpired). The
-- `active` index scores each unrevoked session with its end + KEEP, so the
-- live ones score above NOW + KEEP.
return redis.call('ZCOUNT', ACTIVE, '(' .. n2s(NOW + KEEP), '+inf')
