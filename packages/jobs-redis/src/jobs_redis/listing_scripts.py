"""The Lua scripts of ``list_jobs`` and of the worker records.

Each runs after :data:`jobs_redis.scripts.PRELUDE` and keeps its rules (the
caller's times as ``repr`` strings, no JSON decoded in Lua, every key under
``B = {prefix}:``, one Cluster hash tag). The listing scripts only read: each
answers one page from one snapshot, reading at most ``offset + limit``
entries of each sorted set it merges (a page never reads the whole backlog).

The keys they add under ``B``:

=========================  ==========  =====================================================
``B wk``                   zset        worker records: score last_seen, member worker id
``B wkr``                  hash        worker id -> its record (JSON written by Python)
=========================  ==========  =====================================================
"""

from __future__ import annotations

#: Helpers of the listing scripts (after PRELUDE).
HELPERS = r"""
-- Whether candidate a sorts before b: by a[1], a[2] (numbers), then a[3] (text).
local function before(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end

-- Add to out up to n entries of zset key scored in [low, high], lowest first, as candidates
-- {first, score, tie, id}: first defaults to the score. The member is the job id (kind 'id',
-- the tie the id), a ready member (kind 'ready': sequence ':' id, the tie itself) or a job id
-- ordered by its record's ready member (kind 'keyed').
local function candidates(out, key, low, high, n, first, kind)
  local rows = redis.call('ZRANGEBYSCORE', key, low, high, 'WITHSCORES', 'LIMIT', 0, n)
  for j = 1, #rows, 2 do
    local member, score = rows[j], tonumber(rows[j + 1])
    local id, tie = member, member
    if kind == 'ready' then
      id = string.sub(member, 18)
    elseif kind == 'keyed' then
      tie = redis.call('HGET', B .. 'j:' .. id, 'm') or id
    end
    out[#out + 1] = {first or score, score, tie, id}
  end
end
"""

#: ARGV: B, now, state (queued, delayed or running), limit, offset, [queues...]. Returns, for
#: each listed job, its id and its fields s q a e b w g x (as the status script reads them).
LIST_LIVE = r"""
local now, state, limit, offset = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local at = tonumber(now)
local want = offset + limit
local queues = {unpack(ARGV, 6, #ARGV)}
if #queues == 0 then queues = redis.call('SMEMBERS', B .. 'queues') end
local queued = state == 'queued'
local found = {}
for _, q in ipairs(queues) do
  local qk = B .. 'q:' .. q
  if state == 'running' then
    candidates(found, qk .. ':l', '(' .. now, '+inf', want, nil, 'id')
  else
    local low, high = '-inf', now
    if not queued then low, high = '(' .. now, '+inf' end
    -- queued: by priority, due time and place in line (the reserve order); delayed: by due time
    for _, p in ipairs(redis.call('ZRANGE', qk .. ':p', 0, -1)) do
      candidates(found, qk .. ':r:' .. p, low, high, want, queued and -tonumber(p) or nil, 'ready')
    end
    -- the tenants' own ready sets (tenant fairness): the same order, the turns aside
    for _, t in ipairs(tenants_of(qk)) do
      for _, p in ipairs(redis.call('ZRANGE', source_prios(qk, t), 0, -1)) do
        candidates(found, source_ready(qk, t, p), low, high, want, queued and -tonumber(p) or nil, 'ready')
      end
    end
    -- keyed jobs waiting for their turn run after the ready ones
    candidates(found, qk .. ':b', low, high, want, queued and math.huge or nil, 'keyed')
    if queued then
      -- a job whose lease ended goes back to its place: priority, due time, ready member
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', qk .. ':l', '-inf', now)) do
        local st = redis.call('HMGET', B .. 'j:' .. id, 'p', 'a', 'm')
        if st[3] then found[#found + 1] = {-tonumber(st[1]), tonumber(st[2]), st[3], id} end
      end
    end
  end
end
table.sort(found, before)
local out = {}
local seen = 0
for _, c in ipairs(found) do
  local id = c[4]
  local st = redis.call('HMGET', B .. 'j:' .. id, 's', 'q', 'a', 'e', 'b', 'w', 'g', 'x')
  local due = tonumber(st[3]) or 0
  local leased = st[1] == 'r' and (tonumber(st[4]) or 0) > at
  local ok
  if state == 'running' then
    ok = leased
  elseif queued then
    ok = st[1] and not leased and (st[1] == 'r' or due <= at)
  else
    ok = st[1] == 'w' and due > at
  end
  if ok then
    seen = seen + 1
    if seen > offset then
      out[#out + 1] = id
      for i = 1, 8 do out[#out + 1] = st[i] end
      if seen >= want then break end
    end
  end
end
return out
"""

#: ARGV: B, cutoff, state (succeeded or cancelled), limit, offset, queue ('' every queue).
#: Returns, for each kept job finished at or after cutoff, newest first, its id and record.
LIST_KEPT = r"""
local cutoff, state, limit, offset, q = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local key = B .. 'rk:' .. state
if q ~= '' then key = B .. 'q:' .. q .. ':rk:' .. state end
local want = offset + limit
local out = {}
local seen, pos = 0, 0
while seen < want do
  local rows = redis.call('ZREVRANGEBYSCORE', key, '+inf', cutoff, 'WITHSCORES', 'LIMIT', pos, want)
  if #rows == 0 then break end
  pos = pos + #rows / 2
  local last = #rows < 2 * want
  for j = 1, #rows, 2 do
    local id = rows[j]
    local raw = redis.call('GET', B .. 'r:' .. id)
    -- an entry left by an earlier finish of the same id (its record since rewritten) is skipped
    if raw and tonumber(string.match(raw, '^[^\n]*')) == tonumber(rows[j + 1]) then
      seen = seen + 1
      if seen > offset then
        out[#out + 1] = id
        out[#out + 1] = raw
        if seen >= want then break end
      end
    end
  end
  if last then break end
end
return out
"""

#: ARGV: B, limit, offset, queue ('' every queue). Returns, newest first, each failed entry's id
#: and its fields b q e t x (as the status script reads them).
LIST_FAILED = r"""
local limit, offset, q = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local key = B .. 'f'
if q ~= '' then key = B .. 'q:' .. q .. ':f' end
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', key, offset, offset + limit - 1)) do
  local f = redis.call('HMGET', B .. 'f:' .. id, 'b', 'q', 'e', 't', 'x')
  if f[2] then
    out[#out + 1] = id
    for i = 1, 5 do out[#out + 1] = f[i] end
  end
end
return out
"""

#: ARGV: B, worker id, last_seen, record, cutoff. Writes the record; deletes those last seen
#: before the cutoff.
SAVE_WORKER = r"""
local stale = redis.call('ZRANGEBYSCORE', B .. 'wk', '-inf', '(' .. ARGV[5])
for j = 1, #stale, 1000 do
  redis.call('HDEL', B .. 'wkr', unpack(stale, j, math.min(j + 999, #stale)))
end
redis.call('ZREMRANGEBYSCORE', B .. 'wk', '-inf', '(' .. ARGV[5])
redis.call('ZADD', B .. 'wk', ARGV[3], ARGV[2])
redis.call('HSET', B .. 'wkr', ARGV[2], ARGV[4])
return 1
"""

#: ARGV: B, worker id. Returns 1 if its record was deleted.
REMOVE_WORKER = r"""
redis.call('ZREM', B .. 'wk', ARGV[2])
return redis.call('HDEL', B .. 'wkr', ARGV[2])
"""

#: ARGV: B, cutoff. Returns the records last seen at or after the cutoff.
WORKERS = r"""
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', B .. 'wk', ARGV[2], '+inf')) do
  local record = redis.call('HGET', B .. 'wkr', id)
  if record then out[#out + 1] = record end
end
return out
"""

#: Script name -> source (each after PRELUDE and HELPERS).
ALL: dict[str, str] = {
    "list_live": LIST_LIVE,
    "list_kept": LIST_KEPT,
    "list_failed": LIST_FAILED,
    "save_worker": SAVE_WORKER,
    "remove_worker": REMOVE_WORKER,
    "workers": WORKERS,
}
