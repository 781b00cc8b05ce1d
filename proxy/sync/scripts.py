"""Lua scripts of the sync ledger (see ledger.py). Each works on one shard, whose keys
share one hash tag (store/keys.py SyncKeys), or on the permits (one key).

Times are Redis's clock in ms, so that proxies with skewed clocks agree (each shard's, and
the permits', on the master serving it; a session is always in one shard). A session's state
is one hash field, ``"seq last retry_at step failures"``: ``seq`` counts its writes (the
due mark, store/scripts.py MARK_DUE, adds one), ``last`` is its last write, ``retry_at``
holds off rounds after a failure, ``step`` counts follow-up polls, ``failures`` rounds
failed in a row. A claim is a member of ``claims`` scored by its end (renewed while the
round runs) plus an ``owner`` entry ``"holder seq claimed_at"``. A round also holds a
permit (RESERVE): the permits, unlike the claims, are counted across all shards.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(x) return string.format('%.0f', x) end
local function state(m)
  local st = redis.call('HGET', KEYS[3], m)
  if not st then return '0', 0, 0, 0, 0 end
  local a, b, c, d, e = string.match(st, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
  return a, tonumber(b), tonumber(c), tonumber(d), tonumber(e)
end
"""

# KEYS = one shard's due, dirty, state, claims, owner; ARGV = holder, lease ms, how many
# to claim (the permits the caller holds for them, see RESERVE). Ends expired claims
# (their sessions stay due), then claims due sessions nobody holds, oldest due first.
# Returns {now, when to look at this shard again or '', then member, seq, step, failures
# per claim}: now when it claimed as many as asked (more may be due), else the next due
# time after now, or sooner the end of a claim (a crashed holder's runs out then, and its
# session is claimed again).
CLAIM = _NOW + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for i = 1, #expired, 1000 do
  local chunk = {unpack(expired, i, math.min(i + 999, #expired))}
  redis.call('ZREM', KEYS[4], unpack(chunk))
  redis.call('HDEL', KEYS[5], unpack(chunk))
end
local held = redis.call('ZCARD', KEYS[4])
local free = tonumber(ARGV[3])
local out = {ms(now), ''}
if free > 0 then
  local cands = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, free + held)
  for _, m in ipairs(cands) do
    if not redis.call('ZSCORE', KEYS[4], m) then
      local seq, _, _, step, fails = state(m)
      redis.call('ZADD', KEYS[4], ms(now + tonumber(ARGV[2])), m)
      redis.call('HSET', KEYS[5], m, ARGV[1] .. ' ' .. seq .. ' ' .. ms(now))
      out[#out + 1] = m
      out[#out + 1] = seq
      out[#out + 1] = ms(step)
      out[#out + 1] = ms(fails)
      free = free - 1
      if free == 0 then break end
    end
  end
  if free == 0 then  -- there may be more due: look again at once
    out[2] = ms(now)
    return out
  end
end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms(now), '+inf', 'WITHSCORES',
                       'LIMIT', 0, 1)
local ends = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local at = nxt[2] and tonumber(nxt[2])
if ends[2] and (not at or tonumber(ends[2]) < at) then at = tonumber(ends[2]) end
if at then out[2] = ms(at) end
return out
"""

# KEYS = claims, owner; ARGV = holder, lease ms, members. Extends this holder's claims;
# returns the members it no longer holds.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lost = {}
local mine = ARGV[1] .. ' '
for i = 3, #ARGV do
  local o = redis.call('HGET', KEYS[2], ARGV[i])
  if o and string.sub(o, 1, #mine) == mine then
    redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + tonumber(ARGV[2])), ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS = one shard's due, dirty, state, claims, owner; ARGV = member, holder, outcome, delay
# ms, quiet
# ms, max lag ms, step. Ends the claim (only the holder's own) and reschedules:
#   gone    the session no longer exists here: forget it
#   retry   the round failed: due again after the delay, which writes cannot shorten
#   clean   handed over (or already in sync), nothing to watch: forget it
#   settle  handed over (or already in sync); look again after the delay (step = poll #);
#           the write count restarts, so the poll's claim carries seq 0
# A session written during the round (seq moved) stays dirty from the claim's time on and
# is due as its writes made it, whatever the outcome but retry. Returns {1, when the
# session is due next or ''}, or {0, ''} when the claim was no longer this holder's (ran
# out and taken over: the new holder decides).
DONE = _NOW + """
local m = ARGV[1]
local o = redis.call('HGET', KEYS[5], m)
if not o then return {0, ''} end
local holder, cseq, started = string.match(o, '^(%S+) (%d+) (%d+)$')
if holder ~= ARGV[2] then return {0, ''} end
redis.call('ZREM', KEYS[4], m)
redis.call('HDEL', KEYS[5], m)
local seq, last, _, _, fails = state(m)
local outcome = ARGV[3]
local function keep(retry, step, f)
  redis.call('HSET', KEYS[3], m, seq .. ' ' .. ms(last) .. ' ' .. ms(retry) .. ' ' .. step ..
             ' ' .. ms(f))
end
if outcome == 'gone' then
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
  redis.call('HDEL', KEYS[3], m)
  return {1, ''}
end
if outcome == 'retry' then
  local at = now + tonumber(ARGV[4])
  redis.call('ZADD', KEYS[1], ms(at), m)
  keep(at, ARGV[7], fails + 1)
  return {1, ms(at)}
end
if seq ~= cseq then
  redis.call('ZADD', KEYS[2], started, m)
  local due = math.min(last + tonumber(ARGV[5]), tonumber(started) + tonumber(ARGV[6]))
  redis.call('ZADD', KEYS[1], ms(due), m)
  keep(0, '0', 0)
  return {1, ms(due)}
end
redis.call('ZREM', KEYS[2], m)
if outcome == 'settle' then
  local at = now + tonumber(ARGV[4])
  redis.call('ZADD', KEYS[1], ms(at), m)
  seq = '0'  -- nothing written here is outstanding: a poll's claim says so (seq 0)
  keep(0, ARGV[7], 0)
  return {1, ms(at)}
end
redis.call('ZREM', KEYS[1], m)
redis.call('HDEL', KEYS[3], m)
return {1, ''}
"""

# KEYS = one shard's due, dirty, state; ARGV = member, delay ms. A follow-up poll for a
# session whose upstream copy is known to be current (just imported): due after the delay
# unless due sooner anyway. Returns when the session is due.
SETTLE = _NOW + """
local m = ARGV[1]
redis.call('ZADD', KEYS[1], 'NX', ms(now + tonumber(ARGV[2])), m)
redis.call('HSETNX', KEYS[3], m, '0 0 0 0 0')
return redis.call('ZSCORE', KEYS[1], m)
"""

# KEYS = permits; ARGV = limit, lease ms, permit ids. Drops permits that ran out (their
# holder stopped renewing: it crashed), then grants the ids in order while fewer than the
# limit are held by all holders together. Returns the ids granted.
RESERVE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local out = {}
for i = 3, #ARGV do
  if free <= 0 then break end
  redis.call('ZADD', KEYS[1], ms(now + tonumber(ARGV[2])), ARGV[i])
  out[#out + 1] = ARGV[i]
  free = free - 1
end
return out
"""

# KEYS = permits; ARGV = lease ms, permit ids. Extends the permits still held; returns the
# ids that ran out (dropped by a RESERVE after their end).
RENEW_PERMITS = _NOW + """
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', ms(now + tonumber(ARGV[1])), ARGV[i]) == 0
     and not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS = one shard's due, dirty, state; ARGV = member, due ms, dirty since ms or '', state.
# Moves an entry of the unsharded ledger of earlier versions into its shard; what the
# shard already holds for the session (written since) wins.
ADOPT = """
local m = ARGV[1]
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], m)
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], 'NX', ARGV[3], m) end
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[3], m, ARGV[4]) end
return 1
"""
