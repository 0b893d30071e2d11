"""The Lua scripts of job status, kept results, progress and cancellation.

Each runs after :data:`jobs_redis.scripts.PRELUDE` (so it uses its helpers,
``take_held`` and ``count_acked`` among them: the per-job ack step lives there
once) and keeps the same rules: times are the caller's, passed as ``repr``
strings; a job's body and its result are never decoded in Lua.

The keys they add under ``B = {prefix}:``:

=========================  ==========  =====================================================
``B j:<id>`` (fields)      hash        w the worker running it, g its progress (JSON text
                                       written by Python), x "1" once its cancel was asked
``B r:<id>``               string      a finished job kept ``results_ttl`` (its own expiry):
                                       ``finished_at LF progress LF meta``; meta is JSON
                                       written by Python (state, queue, name, attempts,
                                       result text), or ``~queue LF body`` for a waiting
                                       job removed by ``cancel``
``B rk:<state>``           zset        kept results of one state (succeeded, cancelled): score
                                       finished_at, member id (list_jobs, prune)
``B q:<queue>:rk:<state>`` zset        the same, of one queue
=========================  ==========  =====================================================
"""

from __future__ import annotations

#: Helpers of the scripts below (after the driver's PRELUDE).
HELPERS = r"""
-- The index keys keep wrote to -> the cutoff of their entries, and the (score, id) pairs keep
-- noted for each (see trim_kept).
local kept_indexes = {}
local kept_pairs = {}

local function note_kept(k, now, id, cutoff)
  local pairs_of = kept_pairs[k]
  if not pairs_of then
    pairs_of = {}
    kept_pairs[k] = pairs_of
    kept_indexes[k] = cutoff
  end
  pairs_of[#pairs_of + 1] = now
  pairs_of[#pairs_of + 1] = id
end

-- Keep job id, finished in queue q as state ('succeeded' or 'cancelled'), for ttl milliseconds
-- ('0': keep none), indexed by state for list_jobs and prune. The index entries are added by
-- trim_kept, which the script calls once at the end: one ZADD per index for the whole batch
-- instead of two per job.
local function keep(id, q, state, now, progress, meta, ttl, cutoff)
  if ttl == '0' then return end
  redis.call('SET', B .. 'r:' .. id, now .. '\n' .. progress .. '\n' .. meta, 'PX', ttl)
  note_kept(B .. 'rk:' .. state, now, id, cutoff)
  note_kept(B .. 'q:' .. q .. ':rk:' .. state, now, id, cutoff)
end

-- Add the index entries keep noted, then drop the entries older than the cutoff from those
-- indexes, once per key (their records expire on their own).
local function trim_kept()
  for k, cutoff in pairs(kept_indexes) do
    local entries = kept_pairs[k]
    for j = 1, #entries, 2000 do
      redis.call('ZADD', k, unpack(entries, j, math.min(j + 1999, #entries)))
    end
    redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. cutoff)
  end
end

-- The fields remove_job takes, in its order.
local JOB_FIELDS = {'s', 'q', 'p', 'm', 'e', 'u', 'k', 'c', 'b', 'g', 'v', 't'}

-- Remove job id, not held by a worker, whose JOB_FIELDS are st: out of its ready, keyed and
-- lease sets, its unique key released, its ordering key's next jobs made ready.
local function remove_job(id, st)
  local qk = B .. 'q:' .. st[2]
  redis.call('ZREM', qk .. ':l', id)
  redis.call('ZREM', qk .. ':b', id)
  redis.call('ZREM', source_ready(qk, st[12] or '', st[3]), st[4])
  redis.call('DEL', B .. 'j:' .. id)
  release_unique(st[6], id)
  key_done(st[2], id, st[7], st[8])
end
"""

#: ARGV: B, now, batch token, ttl ms, cutoff, then (queue, id, receipt, meta) per delivery.
#: ``ack`` that keeps each removed job's record; returns how many were removed.
ACK_RESULTS = r"""
local now, token, ttl, cutoff = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local freed = {}
for k = 6, #ARGV, 4 do
  local q, id = ARGV[k], ARGV[k + 1]
  local progress = take_held(q, id, ARGV[k + 2])
  if progress then
    collect(freed, q, id)
    keep(id, q, 'succeeded', now, progress, ARGV[k + 3], ttl, cutoff)
  end
end
trim_kept()
return count_acked(freed, now, token)
"""

#: ARGV: B, now, ttl ms, cutoff, queue, id, receipt, meta. Removes a held job as cancelled
#: (not counted completed); returns 1 if it was held, 0 if not, -1 (nothing written) if it is
#: watched (a workflow commit finishes it).
ACK_CANCELLED = r"""
local now, ttl, cutoff, q, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local progress = take_held(q, id, ARGV[7])
if not progress then return #watched > 0 and -1 or 0 end
redis.call('ZREM', B .. 'q:' .. q .. ':l', id)
keep(id, q, 'cancelled', now, progress, ARGV[8], ttl, cutoff)
trim_kept()
return 1
"""

#: ARGV: B, now, ttl ms, cutoff, id. Removes a waiting job (or one whose lease ended) and keeps
#: it as cancelled, or marks a running one. Returns removed, requested, finished or not_found,
#: or watched (nothing written) for a waiting job a workflow watches (a workflow commit
#: cancels it).
CANCEL = r"""
local now, ttl, cutoff, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local jk = B .. 'j:' .. id
local st = redis.call('HMGET', jk, unpack(JOB_FIELDS))
if not st[1] then
  if redis.call('EXISTS', B .. 'r:' .. id) == 1 or redis.call('EXISTS', B .. 'f:' .. id) == 1 then
    return 'finished'
  end
  return 'not_found'
end
if st[1] == 'r' and tonumber(st[5]) > tonumber(now) then
  redis.call('HSET', jk, 'x', '1')
  return 'requested'
end
if st[11] then return 'watched' end
remove_job(id, st)
keep(id, st[2], 'cancelled', now, st[10] or '', '~' .. st[2] .. '\n' .. st[9], ttl, cutoff)
trim_kept()
return 'removed'
"""

#: ARGV: B, id, receipt, worker, progress ('' none). Returns 1 if the lease is held.
SAVE_PROGRESS = r"""
local jk = B .. 'j:' .. ARGV[2]
local st = redis.call('HMGET', jk, 's', 'r')
if st[1] ~= 'r' or st[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jk, 'w', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', jk, 'g', ARGV[5]) end
return 1
"""

#: ARGV: B, ids... Returns the ids whose cancellation was asked.
CANCEL_REQUESTED = r"""
local out = {}
for i = 2, #ARGV do
  if redis.call('HGET', B .. 'j:' .. ARGV[i], 'x') == '1' then out[#out + 1] = ARGV[i] end
end
return out
"""

#: ARGV: B, id. One snapshot: the job's fields (s q a e b w g x), its kept record, and its failed
#: entry's fields (b q e t x); false where absent.
STATUS = r"""
local id = ARGV[2]
local out = redis.call('HMGET', B .. 'j:' .. id, 's', 'q', 'a', 'e', 'b', 'w', 'g', 'x')
out[9] = redis.call('GET', B .. 'r:' .. id)
local f = redis.call('HMGET', B .. 'f:' .. id, 'b', 'q', 'e', 't', 'x')
for i = 1, 5 do out[9 + i] = f[i] end
return out
"""

#: ARGV: B, cutoff. Removes the kept results finished before the cutoff (not counted). Their
#: ids are read from the two state indexes (and from ``B r``, the one index of earlier
#: versions).
PRUNE_RESULTS = r"""
local cutoff = '(' .. ARGV[2]
for _, k in ipairs({B .. 'rk:succeeded', B .. 'rk:cancelled', B .. 'r'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k, '-inf', cutoff)) do
    redis.call('DEL', B .. 'r:' .. id)
  end
end
local indexes = {B .. 'r', B .. 'rk:succeeded', B .. 'rk:cancelled'}
for _, q in ipairs(redis.call('SMEMBERS', B .. 'queues')) do
  indexes[#indexes + 1] = B .. 'q:' .. q .. ':rk:succeeded'
  indexes[#indexes + 1] = B .. 'q:' .. q .. ':rk:cancelled'
end
for _, k in ipairs(indexes) do redis.call('ZREMRANGEBYSCORE', k, '-inf', cutoff) end
return 1
"""

#: Script name -> source (each after PRELUDE and HELPERS).
ALL: dict[str, str] = {
    "ack_results": ACK_RESULTS,
    "ack_cancelled": ACK_CANCELLED,
    "cancel": CANCEL,
    "save_progress": SAVE_PROGRESS,
    "cancel_requested": CANCEL_REQUESTED,
    "status": STATUS,
    "prune_results": PRUNE_RESULTS,
}
