"""The Lua scripts: every state change of the driver is one of them, so it is atomic.

Rules the scripts keep:

* Times (due times, lease ends, finish times) arrive as the strings Python's
  ``repr`` wrote and are stored as those strings (``ZADD`` takes them as
  given), so no digit is lost. Lua only *compares* them, after ``tonumber``,
  which reads a double exactly.
* The JSON body of a message is never decoded in Lua (its number handling
  loses digits); Python computes every new body.
* Every key starts with ``{prefix}:`` (``ARGV[1]``), one hash tag, so one
  script touches one Cluster slot. ``KEYS[1]`` is ``{prefix}:seq``, which
  routes the call to that slot's node.

Key layout under ``B = {prefix}:``:

=========================  ==========  =====================================================
``B seq``                  string      enqueue order counter
``B queues``               set         every queue name that held a message
``B j:<id>``               hash        one stored job: b body, q queue, p priority, a due
                                       time, m ready-set member, s state (w/r), r receipt,
                                       e lease end, u unique key, k ordering key, c its concurrency,
                                       v set while a workflow watches it (see workflow_scripts),
                                       t its tenant (see fairness)
``B q:<queue>:p``          zset        priorities with a ready set (score -priority)
``B q:<queue>:r:<prio>``   zset        waiting jobs: score due time, member 16-digit
                                       sequence ``:`` id
``B q:<queue>:T`` etc.     zset        the ring of a queue's tenants, and their ``tp:`` and
                                       ``tr:`` sets: see :mod:`jobs_redis.fairness`
``B q:<queue>:l``          zset        leased jobs: score lease end, member id
``B q:<queue>:o:<key>``    zset        unfinished jobs of an ordering key: score sequence, member id
``B q:<queue>:b``          zset        keyed jobs waiting for their key: score due time, member id
``B q:<queue>:d``          zset        acknowledged batches: score finish time, member batch token
``B q:<queue>:dn``         hash        batch token -> how many jobs the batch finished
``B q:<queue>:dc``         string      completed jobs not yet pruned
``B q:<queue>:f``          zset        failed jobs of the queue: score failed_at, member id
``B f``                    zset        every failed job: score failed_at, member id
``B f:<id>``               hash        a failed job: b body, q queue, e error, t failed_at,
                                       x "1" for a malformed record
``B u``                    hash        unique key -> ``holder-id SP expiry`` (expiry may be empty)
``B w:<queue>``            list        wake-up tokens for blocked reserves
``B s``                    set         schedule names
``B s:<name>``             hash        a schedule: d data, n next_run_at, z paused, l last_tick,
                                       t updated_at
``B paused``               set         paused queue names
``B rl:<key>``             list        a rate limit's window, oldest first: ``stamp SP n`` per
                                       grant of ``n`` starts
``B cl:<key>``             zset        a concurrency limit's slots: score lease end, member holder
=========================  ==========  =====================================================
"""

from __future__ import annotations

from jobs_redis import fairness

#: Helpers every script starts with (the first part).
_PRELUDE_START = r"""
local B = ARGV[1]

local function score_of(p)
  return tostring(-tonumber(p))
end

local function release_unique(u, id)
  if u and u ~= '' then
    local held = redis.call('HGET', B .. 'u', u)
    if held and string.sub(held, 1, #id + 1) == id .. ' ' then
      redis.call('HDEL', B .. 'u', u)
    end
  end
end

-- Best effort: a wake-up list overwritten by another program must not fail the write before it.
-- One LPUSH of up to 16 tokens; trimmed back to 16 only when it grew past them.
local function wake(q, n)
  local w = B .. 'w:' .. q
  if n > 16 then n = 16 end
  local tokens = {}
  for i = 1, n do tokens[i] = '1' end
  local len = redis.pcall('LPUSH', w, unpack(tokens))
  if type(len) == 'number' and len > 16 then redis.pcall('LTRIM', w, 0, 15) end
end

-- The name of a key that holds another type than kind (nil if none): checked before writing,
-- so that a key overwritten by another program fails the call before anything is stored.
local function wrong_type(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= kind then return key .. ' holds a ' .. t .. ', not a ' .. kind end
  return nil
end

-- A sorted set of at most zset-max-listpack-entries (128) members is kept by Redis as one packed
-- list: each insert or removal scans it, reading every score as text (about 12 us per member
-- inserted into a 100-member lease set on a slow machine, against 1 us in a skip list). A member
-- longer than zset-max-listpack-value (64 bytes) makes it a skip list, which it stays until it
-- is empty: a batch of leases first adds this member, then removes it.
local SKIPLIST_AT = 16
local LONG_MEMBER = string.rep('~', 72)

local function store_failed(fid, q, body, err, now, raw)
  local fk = B .. 'f:' .. fid
  local old = redis.call('HGET', fk, 'q')
  if old then redis.call('ZREM', B .. 'q:' .. old .. ':f', fid) end
  redis.call('DEL', fk)
  redis.call('HSET', fk, 'b', body, 'q', q, 'e', err, 't', now, 'x', raw)
  redis.call('ZADD', B .. 'f', now, fid)
  redis.call('ZADD', B .. 'q:' .. q .. ':f', now, fid)
end

-- Lease ready member m of queue q, already out of its ready set, for the reserve call r (a
-- table: now, lease_end, token, n jobs leased so far, out its reply, leased the lease entries
-- to add). Returns true if leased; a key that is not a job hash, or a member without a job
-- record, goes to the failed store.
local function lease_member(r, q, m)
  local id = string.sub(m, 18)
  local jk = B .. 'j:' .. id
  local st = redis.pcall('HMGET', jk, 'b', 's')
  if st.err then
    local kind = redis.call('TYPE', jk)['ok']
    local value = '(a ' .. kind .. ')'
    if kind == 'string' then value = redis.call('GET', jk) end
    local why = 'malformed record: key ' .. jk .. ' holds a ' .. kind .. ', not a job hash'
    store_failed(id, q, value, why, r.now, '1')
    redis.call('DEL', jk)
  elseif st[1] and st[2] == 'w' then
    r.n = r.n + 1
    local receipt = r.token .. r.n
    redis.call('HSET', jk, 's', 'r', 'r', receipt, 'e', r.lease_end)
    local leased, out = r.leased, r.out
    leased[#leased + 1] = r.lease_end
    leased[#leased + 1] = id
    out[#out + 1] = q
    out[#out + 1] = id
    out[#out + 1] = receipt
    out[#out + 1] = st[1]
    return true
  elseif not st[1] then
    local fid = 'orphan-' .. string.gsub(m, '[^%w]', '_')
    local why = 'malformed record: sorted-set member ' .. m .. ' has no job record'
    store_failed(fid, q, m, why, r.now, '1')
    redis.call('DEL', jk)
  end
  return false
end

-- Add the lease entries of reserve call r to the lease set of queue key qk.
local function flush_leases(r, qk)
  local leased = r.leased
  if #leased == 0 then return end
  local lk = qk .. ':l'
  local big = #leased >= SKIPLIST_AT
  if big then redis.call('ZADD', lk, r.lease_end, LONG_MEMBER) end
  for j = 1, #leased, 1000 do
    redis.call('ZADD', lk, unpack(leased, j, math.min(j + 999, #leased)))
  end
  if big then redis.call('ZREM', lk, LONG_MEMBER) end
  r.leased = {}
end
"""

#: The rest of :data:`PRELUDE`, after the tenants' helpers of :mod:`jobs_redis.fairness`.
_PRELUDE_END = r"""
-- Waiting job m (priority p, due a, tenant t: '' or nil for none) goes back in line.
local function make_ready(q, p, a, m, t)
  local qk = B .. 'q:' .. q
  if t and t ~= '' then
    tenant_source(qk, t, p)
    redis.call('ZADD', source_ready(qk, t, p), a, m)
    return
  end
  redis.call('ZADD', qk .. ':r:' .. p, a, m)
  redis.call('ZADD', qk .. ':p', score_of(p), p)
end

local function expire_leases(q, now)
  local lk = B .. 'q:' .. q .. ':l'
  local ended = redis.call('ZRANGEBYSCORE', lk, '-inf', now)
  for _, id in ipairs(ended) do
    redis.call('ZREM', lk, id)
    local jk = B .. 'j:' .. id
    local st = redis.call('HMGET', jk, 's', 'p', 'a', 'm', 't')
    if st[1] == 'r' then
      redis.call('HSET', jk, 's', 'w', 'r', '')
      make_ready(q, st[2], st[3], st[4], st[5])
    end
  end
  return #ended
end

local inserted = {}

-- Store job id of queue q (priority p, due a, unique key u, ordering key k of concurrency c,
-- tenant t: '' none) as the seq-th enqueued, waiting for its key or in line.
local function insert(id, q, p, a, u, body, seq, k, c, t)
  local jk = B .. 'j:' .. id
  local m = string.format('%016d', seq) .. ':' .. id
  redis.call('HSET', jk, 'b', body, 'q', q, 'p', p, 'a', a, 'm', m, 's', 'w')
  if u ~= '' then redis.call('HSET', jk, 'u', u) end
  if t ~= '' then redis.call('HSET', jk, 't', t) end
  local tag = q .. ' ' .. p .. ' ' .. t
  if not inserted[tag] then
    redis.call('SADD', B .. 'queues', q)
    if t == '' then
      redis.call('ZADD', B .. 'q:' .. q .. ':p', score_of(p), p)
    else
      tenant_source(B .. 'q:' .. q, t, p)
    end
    inserted[tag] = true
  end
  if k ~= '' then
    redis.call('HSET', jk, 'k', k, 'c', c)
    local ok = B .. 'q:' .. q .. ':o:' .. k
    redis.call('ZADD', ok, seq, id)
    if redis.call('ZRANK', ok, id) >= tonumber(c) then
      redis.call('ZADD', B .. 'q:' .. q .. ':b', a, id)
      return
    end
  end
  redis.call('ZADD', source_ready(B .. 'q:' .. q, t, p), a, m)
end

-- Whether job id may be stored under unique key u ('' none): no unfinished holder whose key
-- has not expired. If so, id becomes the holder (until ux, '' for no expiry).
local function claim_unique(u, ux, id, now)
  if u == '' then return true end
  local held = redis.call('HGET', B .. 'u', u)
  if held then
    local sp = string.find(held, ' ', 1, true)
    local holder = string.sub(held, 1, sp - 1)
    local expiry = string.sub(held, sp + 1)
    if redis.call('HGET', B .. 'j:' .. holder, 'u') == u and (expiry == '' or tonumber(expiry) > now) then
      return false
    end
  end
  redis.call('HSET', B .. 'u', u, id .. ' ' .. ux)
  return true
end

-- A job of ordering key k finished (or was purged): the next ones of the key may run.
local function key_done(q, id, k, c)
  if not k or k == '' then return end
  local ok = B .. 'q:' .. q .. ':o:' .. k
  redis.call('ZREM', ok, id)
  for _, other in ipairs(redis.call('ZRANGE', ok, 0, (tonumber(c) or 1) - 1)) do
    if redis.call('ZREM', B .. 'q:' .. q .. ':b', other) == 1 then
      local st = redis.call('HMGET', B .. 'j:' .. other, 'p', 'a', 'm', 't')
      make_ready(q, st[1], st[2], st[3], st[4])
    end
  end
end

-- Ids of held jobs a plain ack left alone because a workflow watches them (field v).
local watched = {}

-- Remove job id if receipt still holds its lease (its unique key released, its ordering key's
-- next jobs made ready; the lease entry is left to the caller). Returns the job's saved
-- progress ('' if none) when removed, nil when the lease was lost: the one per-job ack step.
-- A watched job is removed only by a workflow commit (watched_too); otherwise it stays held,
-- its id noted in watched, and nil is returned: the caller finishes it as a workflow job.
local function take_held(q, id, receipt, watched_too)
  local jk = B .. 'j:' .. id
  local st = redis.call('HMGET', jk, 's', 'r', 'u', 'k', 'c', 'g', 'v')
  if st[1] ~= 'r' or st[2] ~= receipt then return nil end
  if st[7] and not watched_too then
    watched[#watched + 1] = id
    return nil
  end
  redis.call('DEL', jk)
  release_unique(st[3], id)
  key_done(q, id, st[4], st[5])
  return st[6] or ''
end

-- Note an acknowledged id under its queue, for count_acked.
local function collect(freed, q, id)
  local ids = freed[q]
  if not ids then
    ids = {}
    freed[q] = ids
  end
  ids[#ids + 1] = id
end

-- Remove the leases of the acknowledged ids and count them completed: one batch per queue.
-- Returns the ids left held because they are watched (see take_held), for the caller to
-- finish as workflow jobs.
local function count_acked(freed, now, token)
  local done = 0
  for q, ids in pairs(freed) do
    local qk = B .. 'q:' .. q
    for j = 1, #ids, 1000 do
      redis.call('ZREM', qk .. ':l', unpack(ids, j, math.min(j + 999, #ids)))
    end
    redis.call('ZADD', qk .. ':d', now, token)
    redis.call('HSET', qk .. ':dn', token, #ids)
    redis.call('INCRBY', qk .. ':dc', #ids)
    done = done + #ids
  end
  return watched
end
"""

#: ARGV: B, now, count, then either "m" and per message: id, body, queue, priority, due,
#: unique key ('' none), unique expiry ('' none), ordering key ('' none), key concurrency,
#: tenant ('' none); or "s", those eight fields once, shared by every message, and per
#: message: id, body.
#: Returns per message 1 (stored or already stored) or 0 (dropped).
ENQUEUE = r"""
local now = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local shared = ARGV[4] == 's'
local start, width = 5, 10
if shared then start, width = 13, 2 end
local q, p, a, u, ux, key, kc = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local t = ARGV[12]
local checked = {}
local problem = wrong_type(B .. 'queues', 'set')
local unique_checked = false
for i = 0, count - 1 do
  local k = start + i * width
  local cq, cp, ck, ct, cu = q, p, key, t, u
  if not shared then
    cq, cp, ck, ct, cu = ARGV[k + 2], ARGV[k + 3], ARGV[k + 7], ARGV[k + 9], ARGV[k + 5]
  end
  if cu ~= '' and not unique_checked then
    unique_checked = true
    problem = problem or wrong_type(B .. 'u', 'hash')
  end
  local tag = cq .. ' ' .. cp .. ' ' .. ck .. ' ' .. ct
  if not checked[tag] then
    checked[tag] = true
    local qk = B .. 'q:' .. cq
    problem = problem or wrong_type(qk .. ':p', 'zset') or wrong_type(qk .. ':r:' .. cp, 'zset')
    if ck ~= '' then
      problem = problem or wrong_type(qk .. ':o:' .. ck, 'zset') or wrong_type(qk .. ':b', 'zset')
    end
    if ct ~= '' then
      problem = problem or wrong_type(qk .. ':T', 'zset') or wrong_type(source_prios(qk, ct), 'zset')
        or wrong_type(source_ready(qk, ct, cp), 'zset')
    end
  end
  if shared or problem then break end
end
if problem then return redis.error_reply('WRONGTYPE nothing stored: ' .. problem) end
local first = redis.call('INCRBY', KEYS[1], count) - count
local out = {}
local woken = {}
for i = 0, count - 1 do
  local k = start + i * width
  local id, body = ARGV[k], ARGV[k + 1]
  if not shared then
    q, p, a, u = ARGV[k + 2], ARGV[k + 3], ARGV[k + 4], ARGV[k + 5]
    ux, key, kc, t = ARGV[k + 6], ARGV[k + 7], ARGV[k + 8], ARGV[k + 9]
  end
  local result = 1
  if redis.call('EXISTS', B .. 'j:' .. id) == 0 then
    if not claim_unique(u, ux, id, now) then result = 0 end
    if result == 1 then
      insert(id, q, p, a, u, body, first + i, key, kc, t)
      woken[q] = (woken[q] or 0) + 1
    end
  end
  out[i + 1] = result
end
for q, n in pairs(woken) do wake(q, n) end
return out
"""

#: ARGV: B, now, lease end, limit, receipt token, queues... Returns a flat list of
#: (queue, id, receipt, body) for each leased job, then the next time something falls due
#: ('' if nothing is delayed or leased) when nothing was leased; members without a job
#: record are moved to the failed store. "now" may be "@" and the caller's clock minus the
#: server's (a call pipelined behind a blocking wait): now is then the server's clock plus
#: that offset, and "lease end" is the lease's length.
RESERVE = r"""
local now, lease_end, limit, token = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if string.sub(now, 1, 1) == '@' then
  local t = redis.call('TIME')
  local at = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(string.sub(now, 2))
  now = string.format('%.6f', at)
  lease_end = string.format('%.6f', at + tonumber(lease_end))
end
local r = {now = now, lease_end = lease_end, token = token, n = 0, out = {}, leased = {}}
for i = 6, #ARGV do
  local q = ARGV[i]
  local qk = B .. 'q:' .. q
  expire_leases(q, now)
  if redis.call('EXISTS', qk .. ':T') == 1 then
    take_turns(r, q, qk, limit)
  else
    local prios = redis.call('ZRANGE', qk .. ':p', 0, -1)
    for _, p in ipairs(prios) do
      local rk = qk .. ':r:' .. p
      if r.n < limit then
        local members = redis.call('ZRANGEBYSCORE', rk, '-inf', now, 'LIMIT', 0, limit - r.n)
        if #members > 0 then
          -- the due members are the lowest ranks: remove them in one call
          redis.call('ZREMRANGEBYRANK', rk, 0, #members - 1)
        end
        for _, m in ipairs(members) do lease_member(r, q, m) end
      end
      if redis.call('ZCARD', rk) == 0 then redis.call('ZREM', qk .. ':p', p) end
    end
  end
  flush_leases(r, qk)
  if r.n >= limit then break end
end
local out = r.out
if r.n == 0 then
  local wake_at = nil
  for i = 6, #ARGV do
    local qk = B .. 'q:' .. ARGV[i]
    local candidates = {}
    local first = redis.call('ZRANGE', qk .. ':l', 0, 0, 'WITHSCORES')
    if first[2] then candidates[#candidates + 1] = first[2] end
    local ready = tenant_ready_keys(qk)
    for _, p in ipairs(redis.call('ZRANGE', qk .. ':p', 0, -1)) do ready[#ready + 1] = qk .. ':r:' .. p end
    for _, rk in ipairs(ready) do
      local d = redis.call('ZRANGEBYSCORE', rk, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      if d[2] then candidates[#candidates + 1] = d[2] end
    end
    for _, c in ipairs(candidates) do
      if wake_at == nil or tonumber(c) < tonumber(wake_at) then wake_at = c end
    end
  end
  out[1] = wake_at or ''
end
return out
"""

#: ARGV: B, now, batch token, then (queue, id, receipt) triples. Finishes each job still held
#: by its receipt; each queue counts the batch once in its completed records. Returns the ids
#: of the watched jobs it left held (to be finished by a workflow commit).
ACK = r"""
local now, token = ARGV[2], ARGV[3]
local freed = {}
for k = 4, #ARGV, 3 do
  local q, id = ARGV[k], ARGV[k + 1]
  if take_held(q, id, ARGV[k + 2]) then collect(freed, q, id) end
end
return count_acked(freed, now, token)
"""

#: ARGV: B, queue, id, receipt, new body ('' keeps it), new due time ('' keeps it),
#: 1 to take a new place in line (retry) or 0 to keep it (release).
PUT_BACK = r"""
local q, id, receipt, body, a, renew = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local jk = B .. 'j:' .. id
local st = redis.call('HMGET', jk, 's', 'r', 'p', 'a', 'm', 't')
if st[1] ~= 'r' or st[2] ~= receipt then return 0 end
local m = st[5]
if renew == '1' then
  m = string.format('%016d', redis.call('INCR', KEYS[1])) .. ':' .. id
end
if a == '' then a = st[4] end
if body ~= '' then redis.call('HSET', jk, 'b', body) end
redis.call('HSET', jk, 's', 'w', 'r', '', 'a', a, 'm', m)
redis.call('ZREM', B .. 'q:' .. q .. ':l', id)
make_ready(q, st[3], a, m, st[6])
wake(q, 1)
return 1
"""

#: ARGV: B, queue, id, receipt, new lease end. Returns 1 if the lease is held.
EXTEND = r"""
local q, id, receipt, lease_end = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local jk = B .. 'j:' .. id
local st = redis.call('HMGET', jk, 's', 'r')
if st[1] ~= 'r' or st[2] ~= receipt then return 0 end
redis.call('HSET', jk, 'e', lease_end)
redis.call('ZADD', B .. 'q:' .. q .. ':l', lease_end, id)
return 1
"""

#: ARGV: B, queue, id, receipt, failed id, body to keep ('' keeps the stored one), error, now,
#: "1" if the record is malformed. Moves a held job to the failed store: returns 1, 0 if the
#: lease was lost, -1 (nothing written) if the job is watched (a workflow commit fails it).
FAIL = r"""
local q, id, receipt, fid = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local body, err, now, raw = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local jk = B .. 'j:' .. id
local st = redis.call('HMGET', jk, 's', 'r', 'u', 'b', 'k', 'c', 'v')
if st[1] ~= 'r' or st[2] ~= receipt then return 0 end
if st[7] then return -1 end
if body == '' then body = st[4] end
redis.call('DEL', jk)
redis.call('ZREM', B .. 'q:' .. q .. ':l', id)
release_unique(st[3], id)
key_done(q, id, st[5], st[6])
store_failed(fid, q, body, err, now, raw)
return 1
"""

#: ARGV: B, failed id, the body read (unchanged check), job id, queue, priority, due, new body,
#: ordering key ('' none), key concurrency, tenant ('' none).
#: Returns 1 if put back (or the job id is already stored), 0 if gone, -1 if it changed.
RETRY_FAILED = r"""
local fid, seen, id, q, p, a, body = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local key, kc, t = ARGV[9], ARGV[10], ARGV[11]
local fk = B .. 'f:' .. fid
local st = redis.call('HMGET', fk, 'b', 'q')
if not st[1] then return 0 end
if st[1] ~= seen then return -1 end
redis.call('DEL', fk)
redis.call('ZREM', B .. 'f', fid)
redis.call('ZREM', B .. 'q:' .. st[2] .. ':f', fid)
if redis.call('EXISTS', B .. 'j:' .. id) == 0 then
  insert(id, q, p, a, '', body, redis.call('INCR', KEYS[1]), key, kc, t)
  wake(q, 1)
end
return 1
"""

#: ARGV: B, failed id. Returns 1 if it was deleted.
FORGET_FAILED = r"""
local fid = ARGV[2]
local fk = B .. 'f:' .. fid
local q = redis.call('HGET', fk, 'q')
redis.call('ZREM', B .. 'f', fid)
if not q then return 0 end
redis.call('ZREM', B .. 'q:' .. q .. ':f', fid)
redis.call('DEL', fk)
return 1
"""

#: ARGV: B, now, queues... Returns five counts per queue: pending, delayed, reserved,
#: completed, failed.
STATS = r"""
local now = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local qk = B .. 'q:' .. ARGV[i]
  local pending = redis.call('ZCOUNT', qk .. ':l', '-inf', now)
  local reserved = redis.call('ZCOUNT', qk .. ':l', '(' .. now, '+inf')
  pending = pending + redis.call('ZCOUNT', qk .. ':b', '-inf', now)
  local delayed = redis.call('ZCOUNT', qk .. ':b', '(' .. now, '+inf')
  local ready = tenant_ready_keys(qk)
  for _, p in ipairs(redis.call('ZRANGE', qk .. ':p', 0, -1)) do ready[#ready + 1] = qk .. ':r:' .. p end
  for _, rk in ipairs(ready) do
    pending = pending + redis.call('ZCOUNT', rk, '-inf', now)
    delayed = delayed + redis.call('ZCOUNT', rk, '(' .. now, '+inf')
  end
  out[#out + 1] = pending
  out[#out + 1] = delayed
  out[#out + 1] = reserved
  out[#out + 1] = tonumber(redis.call('GET', qk .. ':dc') or '0')
  out[#out + 1] = redis.call('ZCARD', qk .. ':f')
end
return out
"""

#: ARGV: B, now, queue. Removes the waiting jobs of the queue; returns how many.
PURGE = r"""
local now, q = ARGV[2], ARGV[3]
local qk = B .. 'q:' .. q
expire_leases(q, now)
local removed = 0
local kept = {}
-- A job of a workflow (its body names one, or after= watches it) is left in place and
-- returned: the caller cancels it, which counts it in its workflow.
local function of_workflow(jk)
  local st = redis.call('HMGET', jk, 'v', 'b')
  return st[1] or (st[2] and string.find(st[2], '"jobs.workflow"', 1, true) ~= nil)
end
local sources = tenants_of(qk)
sources[#sources + 1] = ''
for _, t in ipairs(sources) do
  local pk = source_prios(qk, t)
  for _, p in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
    local rk = source_ready(qk, t, p)
    local left = 0
    for _, m in ipairs(redis.call('ZRANGE', rk, 0, -1)) do
      local id = string.sub(m, 18)
      local jk = B .. 'j:' .. id
      local st = redis.call('HMGET', jk, 's', 'u', 'k')
      if st[1] == 'w' and of_workflow(jk) then
        kept[#kept + 1] = id
        left = left + 1
      else
        if st[1] == 'w' then
          release_unique(st[2], id)
          if st[3] and st[3] ~= '' then redis.call('ZREM', qk .. ':o:' .. st[3], id) end
          redis.call('DEL', jk)
          removed = removed + 1
        end
        redis.call('ZREM', rk, m)
      end
    end
    if left == 0 then
      redis.call('DEL', rk)
      redis.call('ZREM', pk, p)
    end
  end
end
prune_ring(qk)
for _, id in ipairs(redis.call('ZRANGE', qk .. ':b', 0, -1)) do
  local jk = B .. 'j:' .. id
  if of_workflow(jk) then
    kept[#kept + 1] = id
  else
    local st = redis.call('HMGET', jk, 'u', 'k')
    release_unique(st[1], id)
    if st[2] then redis.call('ZREM', qk .. ':o:' .. st[2], id) end
    redis.call('DEL', jk)
    redis.call('ZREM', qk .. ':b', id)
    removed = removed + 1
  end
end
return {removed, kept}
"""

#: ARGV: B, cutoff. Removes completed and failed records finished before the cutoff.
PRUNE = r"""
local cutoff = '(' .. ARGV[2]
local removed = 0
for _, q in ipairs(redis.call('SMEMBERS', B .. 'queues')) do
  local qk = B .. 'q:' .. q
  local jobs = 0
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', qk .. ':d', '-inf', cutoff)) do
    jobs = jobs + tonumber(redis.call('HGET', qk .. ':dn', token) or '0')
    redis.call('HDEL', qk .. ':dn', token)
  end
  if jobs > 0 then
    redis.call('ZREMRANGEBYSCORE', qk .. ':d', '-inf', cutoff)
    redis.call('DECRBY', qk .. ':dc', jobs)
    removed = removed + jobs
  end
end
local old = redis.call('ZRANGEBYSCORE', B .. 'f', '-inf', cutoff)
for _, fid in ipairs(old) do
  local fk = B .. 'f:' .. fid
  local q = redis.call('HGET', fk, 'q')
  if q then redis.call('ZREM', B .. 'q:' .. q .. ':f', fid) end
  redis.call('DEL', fk)
  redis.call('ZREM', B .. 'f', fid)
  removed = removed + 1
end
return removed
"""

#: ARGV: B, id, queue, body, now, tenant ('' none). A record written as-is (raw injection).
INJECT = r"""
local id, q, body, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
insert(id, q, '0', now, '', body, redis.call('INCR', KEYS[1]), '', '1', ARGV[6])
wake(q, 1)
return 1
"""

#: ARGV: B, name, data, next_run_at ('' none), paused, last_tick ('' keeps), updated_at.
SAVE_SCHEDULE = r"""
local name, data, nxt, paused, last, updated = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local sk = B .. 's:' .. name
redis.call('HSET', sk, 'd', data, 'n', nxt, 'z', paused, 't', updated)
if last ~= '' or redis.call('HEXISTS', sk, 'l') == 0 then redis.call('HSET', sk, 'l', last) end
redis.call('SADD', B .. 's', name)
return 1
"""

#: ARGV: B, name. Returns 1 if a schedule was removed.
REMOVE_SCHEDULE = r"""
redis.call('SREM', B .. 's', ARGV[2])
return redis.call('DEL', B .. 's:' .. ARGV[2])
"""

#: ARGV: B, name, tick. Returns 1 for the one caller whose tick is later than last_tick.
CLAIM_TICK = r"""
local sk = B .. 's:' .. ARGV[2]
local tick = ARGV[3]
if redis.call('EXISTS', sk) == 0 then return 0 end
local last = redis.call('HGET', sk, 'l')
if last and last ~= '' and tonumber(tick) <= tonumber(last) then return 0 end
redis.call('HSET', sk, 'l', tick)
return 1
"""

#: ARGV: B, name, expected ('' none), next_run_at ('' none), now. Compare-and-set.
ADVANCE_SCHEDULE = r"""
local sk = B .. 's:' .. ARGV[2]
local expected, nxt, now = ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', sk) == 0 then return 0 end
local cur = redis.call('HGET', sk, 'n') or ''
if cur == '' or expected == '' then
  if cur ~= expected then return 0 end
elseif tonumber(cur) ~= tonumber(expected) then
  return 0
end
redis.call('HSET', sk, 'n', nxt, 't', now)
return 1
"""

TAKE_TOKENS = r"""
-- ARGV: B, key, count, per, want, now (the caller's clock). The grants are stamped with now, or
-- with the newest stamp of the window if a caller whose clock is ahead stamped later, so that
-- stamps follow the order of the grants. Returns granted, the stamp, the oldest stamp kept.
local k = B .. 'rl:' .. ARGV[2]
local count, per, want = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local bad = wrong_type(k, 'list')
if bad then return redis.error_reply('WRONGTYPE nothing stored: ' .. bad) end
local at = ARGV[6]
local newest = redis.call('LINDEX', k, -1)
if newest then
  local stamp = string.match(newest, '^(%S+)')
  if stamp and tonumber(stamp) > tonumber(at) then at = stamp end
end
local horizon = tonumber(at) - per
local used = 0
local oldest = nil
local drop = 0
for _, entry in ipairs(redis.call('LRANGE', k, 0, -1)) do
  local stamp, n = string.match(entry, '^(%S+) (%d+)$')
  if stamp and oldest == nil and tonumber(stamp) <= horizon then
    drop = drop + 1
  elseif stamp then
    if oldest == nil then oldest = stamp end
    used = used + tonumber(n)
  elseif oldest == nil then
    drop = drop + 1  -- not written by the driver: dropped once at the front
  end
end
if drop > 0 then redis.call('LTRIM', k, drop, -1) end
local granted = count - used
if granted > want then granted = want end
if granted < 0 then granted = 0 end
if granted > 0 then
  redis.call('RPUSH', k, at .. ' ' .. granted)
  if oldest == nil then oldest = at end
  -- Only garbage collection (a duration, not a time): the window is judged by the stamps.
  local ms = math.ceil(per * 1000) + 1000
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
return {granted, at, oldest or at}
"""

ACQUIRE_SLOT = r"""
-- ARGV: B, key, limit, holder, now, lease end. 1 if holder holds a slot now (renewed if held).
local k = B .. 'cl:' .. ARGV[2]
local limit, holder = tonumber(ARGV[3]), ARGV[4]
local bad = wrong_type(k, 'zset')
if bad then return redis.error_reply('WRONGTYPE nothing stored: ' .. bad) end
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[5])
if not redis.call('ZSCORE', k, holder) and redis.call('ZCARD', k) >= limit then return 0 end
redis.call('ZADD', k, ARGV[6], holder)
local ms = math.ceil((tonumber(ARGV[6]) - tonumber(ARGV[5])) * 1000) + 1000
if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
return 1
"""

ACQUIRE_SLOTS = r"""
-- ARGV: B, key, limit, now, lease end, holder... Slots for the holders in order, as ACQUIRE_SLOT
-- would take them one by one: how many of them, from the first, hold one now.
local k = B .. 'cl:' .. ARGV[2]
local limit = tonumber(ARGV[3])
local bad = wrong_type(k, 'zset')
if bad then return redis.error_reply('WRONGTYPE nothing stored: ' .. bad) end
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[4])
local held = redis.call('ZCARD', k)
local granted = 0
for i = 6, #ARGV do
  if not redis.call('ZSCORE', k, ARGV[i]) then
    if held >= limit then break end
    held = held + 1
  end
  redis.call('ZADD', k, ARGV[5], ARGV[i])
  granted = granted + 1
end
if granted > 0 then
  local ms = math.ceil((tonumber(ARGV[5]) - tonumber(ARGV[4])) * 1000) + 1000
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
return granted
"""

RELEASE_SLOTS = r"""
-- ARGV: B, then key, holder pairs. Frees each holder's slot of its key (nothing if it holds none).
for i = 2, #ARGV - 1, 2 do
  local k = B .. 'cl:' .. ARGV[i]
  if redis.call('TYPE', k).ok == 'zset' then redis.call('ZREM', k, ARGV[i + 1]) end
end
return 0
"""

EXTEND_SLOT = r"""
-- ARGV: B, key, holder, now, lease end. 0 if the holder's lease had ended (the slot is lost).
local k = B .. 'cl:' .. ARGV[2]
local bad = wrong_type(k, 'zset')
if bad then return redis.error_reply('WRONGTYPE nothing stored: ' .. bad) end
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[4])
if not redis.call('ZSCORE', k, ARGV[3]) then return 0 end
redis.call('ZADD', k, ARGV[5], ARGV[3])
local ms = math.ceil((tonumber(ARGV[5]) - tonumber(ARGV[4])) * 1000) + 1000
if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
return 1
"""

#: Helpers every script starts with.
PRELUDE = _PRELUDE_START + fairness.HELPERS + _PRELUDE_END

ALL: dict[str, str] = {
    "enqueue": ENQUEUE,
    "reserve": RESERVE,
    "ack": ACK,
    "put_back": PUT_BACK,
    "extend": EXTEND,
    "fail": FAIL,
    "retry_failed": RETRY_FAILED,
    "forget_failed": FORGET_FAILED,
    "stats": STATS,
    "purge": PURGE,
    "prune": PRUNE,
    "inject": INJECT,
    "save_schedule": SAVE_SCHEDULE,
    "remove_schedule": REMOVE_SCHEDULE,
    "claim_tick": CLAIM_TICK,
    "advance_schedule": ADVANCE_SCHEDULE,
    "take_tokens": TAKE_TOKENS,
    "acquire_slot": ACQUIRE_SLOT,
    "acquire_slots": ACQUIRE_SLOTS,
    "release_slots": RELEASE_SLOTS,
    "extend_slot": EXTEND_SLOT,
}
