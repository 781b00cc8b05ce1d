"""Lua scripts that change one session atomically (all keys share one hash tag).

Each write is conditional on the session's version, so concurrent writers through one
proxy or several end as some serial order of them: a write planned against a version
that is no longer current is refused and re-planned by its owner.

A version never repeats for one key, even across DELETE or expiry: a session is created
at the version its writer proposes, the writer's clock in µs, and each write adds one.
Were it to restart at 1, a proxy caching the old session at version n would take a new
session that reached n for its own, and serve or append to the wrong messages. (Writes
to one session take more than a microsecond each, so a session never counts past the
clock.) The writer choosing it lets a buffered proxy know the version before it lands.

Read leases (leases.py): a proxy that reads a session registers itself in the session's
lease hash (holder id -> expiry, Redis clock in ms) and then serves reads from its cache
without asking Redis until the lease ends. Every write and delete ends the other holders'
leases, PUBLISHes "<new version> <revoked holders, comma-separated, or -> <meta key>" on
``<prefix>:invalidate`` (version 0 for a delete) and returns how long the longest revoked
lease had left; the writer acknowledges only once each revoked holder has announced that
it dropped the old version, or that time has passed. A write also grants its writer a
lease: its cache holds what it just wrote.

Common arguments: KEYS = meta, messages, tokens, leases. ARGV[1] = expected version ("0"
for a session that must not exist yet, "*" for any), ARGV[2] = ttl ("" keeps any TTL, like
the upstream's JSON.SET), ARGV[3] = packed token counts, ARGV[4] = number F of meta field
pairs, ARGV[5] = the version to create the session at, ARGV[6] = the writer's holder id,
ARGV[7] = lease length in ms (0: none), ARGV[8] = the channel to announce the write on ("":
PUBLISH on ``<prefix>:invalidate``; else SPUBLISH there, the sharded channel of the
session's slot on a Redis Cluster), ARGV[9 .. 8+2F] = meta fields, then the messages.
Writes return {1, new version, ms left on revoked leases, revoked holders} or, refused,
{0, current version}.
"""

from __future__ import annotations

_PRELUDE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '*' and v ~= tonumber(ARGV[1]) then return {0, v} end
local nf = tonumber(ARGV[4])
local first = 9 + 2 * nf
local pttl = redis.call('PTTL', KEYS[1])
local nv = v + 1
if v == 0 then nv = tonumber(ARGV[5]) end
"""

# Push messages in slices: Lua's unpack has a small stack limit.
_PUSH = """
for i = first, #ARGV, 4000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
"""

# Ends every lease but the writer's; returns the live ones ended, the most ms one had
# left, and Redis's clock in ms.
# Numbers go through string.format: Lua prints large numbers in exponent form.
_REVOKE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function revoke(writer)
  local now = now_ms()
  local held = redis.call('HGETALL', KEYS[4])
  local others, revoked, wait = {}, {}, 0
  for i = 1, #held, 2 do
    if held[i] ~= writer then
      others[#others + 1] = held[i]
      local left = tonumber(held[i + 1]) - now
      if left > 0 then
        revoked[#revoked + 1] = held[i]
        if left > wait then wait = left end
      end
    end
  end
  if #others > 0 then redis.call('HDEL', KEYS[4], unpack(others)) end
  return revoked, wait, now
end
local function announce(channel, version, revoked)
  local holders = #revoked > 0 and table.concat(revoked, ',') or '-'
  local message = string.format('%.0f', version) .. ' ' .. holders .. ' ' .. KEYS[1]
  if channel == '' then
    redis.call('PUBLISH', string.match(KEYS[1], '^(.*):{') .. ':invalidate', message)
  else
    redis.call('SPUBLISH', channel, message)
  end
end
"""

_FINISH = _REVOKE + """
-- 'x' tells readers whether the session can expire (expiry publishes nothing)
local expires = (ARGV[2] ~= '' or pttl > 0) and '1' or '0'
redis.call('HSET', KEYS[1], 'v', nv, 'x', expires, unpack(ARGV, 9, first - 1))
if ARGV[2] ~= '' then
  local ttl = tonumber(ARGV[2])
  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
elseif pttl > 0 then
  -- keys created by this write inherit the session's remaining TTL
  redis.call('PEXPIRE', KEYS[2], pttl)
  redis.call('PEXPIRE', KEYS[3], pttl)
end
local revoked, wait, now = revoke(ARGV[6])
local lease = tonumber(ARGV[7])
if ARGV[6] ~= '' and lease > 0 then
  redis.call('HSET', KEYS[4], ARGV[6], string.format('%.0f', now + lease))
  redis.call('PEXPIRE', KEYS[4], lease)
end
announce(ARGV[8], nv, revoked)
return {1, nv, wait, table.concat(revoked, ',')}
"""

APPEND = _PRELUDE + _PUSH + """
if ARGV[3] ~= '' then redis.call('APPEND', KEYS[3], ARGV[3]) end
""" + _FINISH

REWRITE = _PRELUDE + """
redis.call('DEL', KEYS[2], KEYS[3])
""" + _PUSH + """
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
""" + _FINISH

# KEYS as above, ARGV[1] = the deleting proxy's holder id, ARGV[2] = the channel (as
# ARGV[8] above); returns {index member of the deleted session or '', ms left on revoked
# leases, revoked holders}.
DELETE = _REVOKE + """
local member = redis.call('HGET', KEYS[1], 'ix') or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local revoked, wait = revoke(ARGV[1])
redis.call('DEL', KEYS[4])
announce(ARGV[2], 0, revoked)
return {member, wait, table.concat(revoked, ',')}
"""

# KEYS = meta, leases; ARGV = holder id, lease length in ms. Grants the lease when the
# session exists; returns its version (0: none).
LEASE = """
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%.0f', now + lease))
if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
return v
"""

# The upstream sync's due mark (never for the sync's own write-backs), applied only after
# the session's write script: on one server right after it in the same pipeline, on a
# cluster in a second pipeline of the marks of the writes whose script succeeded
# (engine/flusher.py), since per-master pipelines run concurrently. A write is
# acknowledged only once its hand-over is due. KEYS = the due, dirty, state of the
# session's ledger shard (SyncKeys.for_mark), on one server also the session's meta;
# ARGV = member, quiet ms, max lag ms, on one server also the version the write gives the
# session ('' for any): a write refused or failed leaves another version, and marks
# nothing (returns 0). The round is due a quiet period after the last write, but no later
# than max lag after the oldest change not yet handed over, and not before a failed
# round's retry time. Returns that due time (ms, Redis clock). See proxy/sync/ledger.py
# for the other fields.
MARK_DUE = """
if KEYS[4] and ARGV[4] ~= ''
   and tonumber(redis.call('HGET', KEYS[4], 'v') or '0') ~= tonumber(ARGV[4]) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = ARGV[1]
local seq, retry, fails = 0, 0, 0
local st = redis.call('HGET', KEYS[3], m)
if st then
  local a, b, c = string.match(st, '^(%d+) %d+ (%d+) %d+ (%d+)$')
  seq, retry, fails = tonumber(a), tonumber(b), tonumber(c)
end
redis.call('ZADD', KEYS[2], 'NX', string.format('%.0f', now), m)
local first = tonumber(redis.call('ZSCORE', KEYS[2], m))
local due = math.min(now + tonumber(ARGV[2]), first + tonumber(ARGV[3]))
if retry > due then due = retry end
redis.call('ZADD', KEYS[1], string.format('%.0f', due), m)
redis.call('HSET', KEYS[3], m, string.format('%.0f %.0f %.0f 0 %.0f', seq + 1, now, retry, fails))
return due
"""
