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

Every write and delete PUBLISHes "<meta key> <new version>" on ``<prefix>:invalidate``
(version 0 for a delete) so other proxies drop their cached tails (invalidation.py).

Common arguments: KEYS = meta, messages, tokens. ARGV[1] = expected version ("0" for a
session that must not exist yet, "*" for any), ARGV[2] = ttl ("" keeps any TTL, like the
upstream's JSON.SET), ARGV[3] = packed token counts, ARGV[4] = number F of meta field
pairs, ARGV[5] = the version to create the session at, ARGV[6 .. 5+2F] = meta fields,
then the messages.
"""

from __future__ import annotations

_PRELUDE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '*' and v ~= tonumber(ARGV[1]) then return {0, v} end
local nf = tonumber(ARGV[4])
local first = 6 + 2 * nf
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

_FINISH = """
-- 'x' tells readers whether the session can expire (expiry publishes nothing)
local expires = (ARGV[2] ~= '' or pttl > 0) and '1' or '0'
redis.call('HSET', KEYS[1], 'v', nv, 'x', expires, unpack(ARGV, 6, first - 1))
if ARGV[2] ~= '' then
  local ttl = tonumber(ARGV[2])
  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
elseif pttl > 0 then
  -- keys created by this write inherit the session's remaining TTL
  redis.call('PEXPIRE', KEYS[2], pttl)
  redis.call('PEXPIRE', KEYS[3], pttl)
end
redis.call('PUBLISH', string.match(KEYS[1], '^(.*):{') .. ':invalidate',
  KEYS[1] .. ' ' .. string.format('%.0f', nv))  -- '..' alone would print 14 digits
return {1, nv}
"""

APPEND = _PRELUDE + _PUSH + """
if ARGV[3] ~= '' then redis.call('APPEND', KEYS[3], ARGV[3]) end
""" + _FINISH

REWRITE = _PRELUDE + """
redis.call('DEL', KEYS[2], KEYS[3])
""" + _PUSH + """
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
""" + _FINISH

# KEYS as above; returns the index member of the deleted session (or false).
DELETE = """
local member = redis.call('HGET', KEYS[1], 'ix')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', string.match(KEYS[1], '^(.*):{') .. ':invalidate', KEYS[1] .. ' 0')
return member
"""
