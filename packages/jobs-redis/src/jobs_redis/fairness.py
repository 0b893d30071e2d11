"""Tenant fairness of the Redis driver: a queue's tenants served in turns.

A job dispatched with ``Job.tenant(key)`` (its ``jobs-tenant`` header) is
stored with its tenant in the job hash (field ``t``) and waits in its
tenant's own ready sets instead of the queue's. A queue with tenants has a
*ring*: a sorted set of its sources, the tenants with waiting jobs and the
member ``''`` standing for the queue's jobs without a tenant (which keep
their ordinary ready sets). ``reserve`` serves a queue with a ring in turns:
the source at the head of the ring gives one job (its highest priority's
earliest due job, ties in enqueue order: the order of a queue without
tenants) and goes to the back; a source with nothing due passes its turn.
One tenant's backlog therefore delays another tenant's job by at most one
job per source ahead of it in the ring, on any number of workers (each
reserve is one script that advances the shared ring).

A tenant whose jobs are all taken leaves the ring; once only ``''`` is left
the ring is deleted, and the queue is reserved by the ordinary path again.
A queue whose jobs never carried a tenant has no ring: its reserve pays one
``EXISTS`` for it and is otherwise unchanged.

Keys under ``B = {prefix}:`` (all in the queue's hash tag, so one Cluster
slot, like the rest):

=========================  ==========  =====================================================
``B q:<queue>:T``          zset        the ring: score its turn (the head serves next),
                                       member a tenant with waiting jobs, or ``''``
``B q:<queue>:tp:<t>``     zset        tenant t's priorities with a ready set (score -priority)
``B q:<queue>:tr:<p>:<t>`` zset        tenant t's waiting jobs of priority p: score due time,
                                       member 16-digit sequence ``:`` id (as ``q:<queue>:r:<p>``)
=========================  ==========  =====================================================

The tenant is the key's last part (a priority is a whole number), so no two
tenants' keys meet whatever characters a tenant holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobs_core.flow import MAX_FLOW_KEY
from jobs_core.flow_state import TENANT_HEADER


def tenant_of(headers: Mapping[str, str] | None) -> str:
    """The tenant a job is served under: its ``jobs-tenant`` header, ``""`` for none.

    A header that is empty or longer than a flow-control key (written by
    other means: ``Job.tenant`` refuses both at dispatch) counts as none.
    """
    tenant = headers.get(TENANT_HEADER) if headers else None
    if not isinstance(tenant, str) or not 1 <= len(tenant) <= MAX_FLOW_KEY:
        return ""
    return tenant


#: Lua helpers (part of :data:`jobs_redis.scripts.PRELUDE`, after ``lease_member``): the keys of
#: a source, a tenant's ready sets, the ring and the turns ``reserve`` takes.
HELPERS = r"""
-- The priorities key of source t of queue key qk ('' the jobs without a tenant), and one of
-- its ready sets.
local function source_prios(qk, t)
  if t == '' then return qk .. ':p' end
  return qk .. ':tp:' .. t
end

local function source_ready(qk, t, p)
  if t == '' then return qk .. ':r:' .. p end
  return qk .. ':tr:' .. p .. ':' .. t
end

-- Tenant t of queue key qk has a ready set of priority p: it has its turns (if it was not in
-- the ring, it joins at the back, behind the jobs without a tenant if the ring is new).
local function tenant_source(qk, t, p)
  local ring = qk .. ':T'
  if not redis.call('ZSCORE', ring, t) then
    local last = redis.call('ZRANGE', ring, -1, -1, 'WITHSCORES')
    if last[2] then
      redis.call('ZADD', ring, tonumber(last[2]) + 1, t)
    else
      redis.call('ZADD', ring, 0, '', 1, t)
    end
  end
  redis.call('ZADD', qk .. ':tp:' .. t, score_of(p), p)
end

-- The tenants of queue key qk that have waiting jobs (the ring's members but '').
local function tenants_of(qk)
  local out = {}
  for _, t in ipairs(redis.call('ZRANGE', qk .. ':T', 0, -1)) do
    if t ~= '' then out[#out + 1] = t end
  end
  return out
end

-- Every ready set of the tenants of queue key qk.
local function tenant_ready_keys(qk)
  local keys = {}
  for _, t in ipairs(tenants_of(qk)) do
    for _, p in ipairs(redis.call('ZRANGE', qk .. ':tp:' .. t, 0, -1)) do
      keys[#keys + 1] = source_ready(qk, t, p)
    end
  end
  return keys
end

-- Delete ring if only '' (the jobs without a tenant) is left in it.
local function drop_lone_ring(ring)
  if redis.call('ZCARD', ring) <= 1 and redis.call('ZSCORE', ring, '') then redis.call('DEL', ring) end
end

-- The tenants of queue key qk left without waiting jobs leave its ring (a purge emptied them).
local function prune_ring(qk)
  local ring = qk .. ':T'
  for _, t in ipairs(tenants_of(qk)) do
    if redis.call('EXISTS', qk .. ':tp:' .. t) == 0 then redis.call('ZREM', ring, t) end
  end
  drop_lone_ring(ring)
end

-- One turn of source t of queue q for reserve call r: lease its highest priority's earliest
-- due job. Returns true if one was leased.
local function take_one(r, q, qk, t)
  local pk = source_prios(qk, t)
  for _, p in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
    local rk = source_ready(qk, t, p)
    local leased = false
    while not leased do
      local m = redis.call('ZRANGEBYSCORE', rk, '-inf', r.now, 'LIMIT', 0, 1)[1]
      if not m then break end
      redis.call('ZREM', rk, m)
      leased = lease_member(r, q, m)
    end
    if redis.call('EXISTS', rk) == 0 then redis.call('ZREM', pk, p) end
    if leased then return true end
  end
  return false
end

-- Lease up to limit jobs of queue q (key qk, which has a ring) for reserve call r, one per
-- turn; stops when a whole round of the ring took nothing. A tenant left without waiting
-- jobs leaves the ring; a ring left with only '' is deleted.
local function take_turns(r, q, qk, limit)
  local ring = qk .. ':T'
  local size = redis.call('ZCARD', ring)
  local tail = tonumber(redis.call('ZRANGE', ring, -1, -1, 'WITHSCORES')[2] or '0')
  local idle = 0
  while r.n < limit and idle < size do
    local t = redis.call('ZRANGE', ring, 0, 0)[1]
    if not t then break end
    if take_one(r, q, qk, t) then idle = 0 else idle = idle + 1 end
    if t ~= '' and redis.call('EXISTS', qk .. ':tp:' .. t) == 0 then
      redis.call('ZREM', ring, t)
      size = size - 1
    else
      tail = tail + 1
      redis.call('ZADD', ring, tail, t)
    end
  end
  if size <= 1 then drop_lone_ring(ring) end
end
"""
