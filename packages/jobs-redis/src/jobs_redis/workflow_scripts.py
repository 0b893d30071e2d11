"""The Lua script that commits a workflow transaction, and the keys it adds.

A workflow transaction (:mod:`jobs_redis.workflows`) locks each record it
reads (``SET {p}:wfl:<id> token NX PX``), lets the pure functions of
:mod:`jobs_core.workflow_state` decide in Python, and commits everything in
one script: :data:`COMMIT` first checks that every lock is still the
transaction's, that the job it finishes is still held by the caller's
receipt (or still waiting, for a cancel), and that the jobs it removes are
still waiting; only then does it write anything. The job's removal, the
records, the jobs it enqueues and the failed entries it adds are one atomic
change, so a completion is counted exactly when its job is removed.

Keys under ``B = {prefix}:``:

=========================  ==========  =====================================================
``B wf:<id>``              hash        a workflow record: d its JSON (written by Python,
                                       never decoded in Lua), k its kind
``B wff``                  zset        ids of the finished records by finished_at (prune)
``B wfs``, ``B wfs:<kind>``  zset      record ids by creation time (listing, newest first)
``B wf:<id>:j``            set         ids of the jobs the workflow's transactions stored
                                       (cancelling a batch finds its waiting jobs there)
``B wfl:<id>``             string      the lock of a transaction reading the record
``B j:<id>`` field v       hash field  the token of the transaction that watches the job
                                       (a plainly dispatched job a dependent job waits for)
=========================  ==========  =====================================================

A watched job (field ``v`` set) is never removed by the plain ``ack``,
``ack_results``, ``ack_cancelled``, ``fail`` or ``cancel`` scripts: they
leave it as it is and say so, and the driver finishes it through
:data:`COMMIT` as a job of the workflow named by its own id. The watching
transaction sets ``v`` while it holds the lock of that record (so the commit
that counts the job waits for the record to exist), and clears it again if
it does not commit.
"""

from __future__ import annotations

#: ARGV: B, now, token, ttl ms, cutoff, batch token, then sections, each a count and its rows:
#: jobs finished (action, queue, handle, receipt, job id, x1, x2), locks (id), removals (id,
#: ready member), saves (id, data, created_at, kind, finished_at or ''), enqueues (id, body,
#: queue, priority, due, unique key, unique expiry, ordering key, key concurrency, tenant,
#: workflow id), failures (failed id, queue, body, error).
#:
#: Actions: 'ack' (x1: the kept record's meta, '' none); 'fail' (x1: body, x2: error);
#: 'cancelled' (x1: meta); 'cancel' of a waiting job (receipt: its ready member).
#: Returns 'ok', or without writing anything: 'lock' (a lock was lost), the positions (from 1)
#: of the jobs no longer held, 'running' (a job to cancel is running), 'changed' (a job to
#: cancel or remove changed).
COMMIT = r"""
local now, token, ttl, cutoff, batch = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local i = 7
local sections = {}
for s, width in ipairs({7, 1, 2, 5, 11, 4}) do
  local rows = {}
  for _ = 1, tonumber(ARGV[i]) do
    rows[#rows + 1] = {unpack(ARGV, i + 1, i + width)}
    i = i + width
  end
  i = i + 1
  sections[s] = rows
end
local acts, locks, removals, saves, enqueues, failures = unpack(sections)

for _, row in ipairs(locks) do
  if redis.call('GET', B .. 'wfl:' .. row[1]) ~= token then return 'lock' end
end
local lost = {}
local cancelled = {}
for n, a in ipairs(acts) do
  local jk = B .. 'j:' .. a[3]
  if a[1] == 'cancel' then
    expire_leases(a[2], now)
    local job = redis.call('HMGET', jk, unpack(JOB_FIELDS))
    if job[1] == 'r' then return 'running' end
    if job[1] ~= 'w' or job[4] ~= a[4] then return 'changed' end
    cancelled[n] = job
  else
    local st = redis.call('HMGET', jk, 's', 'r')
    if st[1] ~= 'r' or st[2] ~= a[4] then lost[#lost + 1] = n end
  end
end
if #lost > 0 then return lost end
local doomed = {}
for _, row in ipairs(removals) do
  local st = redis.call('HMGET', B .. 'j:' .. row[1], unpack(JOB_FIELDS))
  if st[1] == 'r' and tonumber(st[5]) <= tonumber(now) then
    expire_leases(st[2], now)
    st = redis.call('HMGET', B .. 'j:' .. row[1], unpack(JOB_FIELDS))
  end
  if st[1] ~= 'w' or st[4] ~= row[2] then return 'changed' end
  doomed[#doomed + 1] = {row[1], st}
end

-- Checked: from here on, everything is written.
local freed = {}
for n, a in ipairs(acts) do
  local action, q, handle, receipt, fid, x1, x2 = unpack(a)
  if action == 'cancel' then
    local job = cancelled[n]
    remove_job(handle, job)
    keep(fid, job[2], 'cancelled', now, job[10] or '', '~' .. job[2] .. '\n' .. job[9], ttl, cutoff)
  else
    local progress = take_held(q, handle, receipt, true)
    if action == 'ack' then
      collect(freed, q, handle)
      if x1 ~= '' then keep(fid, q, 'succeeded', now, progress, x1, ttl, cutoff) end
    else
      redis.call('ZREM', B .. 'q:' .. q .. ':l', handle)
      if action == 'fail' then
        store_failed(fid, q, x1, x2, now, '0')
      else
        keep(fid, q, 'cancelled', now, progress, x1, ttl, cutoff)
      end
    end
  end
end
count_acked(freed, now, batch)
trim_kept()
for _, pair in ipairs(doomed) do remove_job(pair[1], pair[2]) end
for _, row in ipairs(saves) do
  redis.call('HSET', B .. 'wf:' .. row[1], 'd', row[2], 'k', row[4])
  if row[5] == '' then
    redis.call('ZREM', B .. 'wff', row[1])
  else
    redis.call('ZADD', B .. 'wff', row[5], row[1])
  end
  redis.call('ZADD', B .. 'wfs', row[3], row[1])
  redis.call('ZADD', B .. 'wfs:' .. row[4], row[3], row[1])
end
local woken = {}
for _, row in ipairs(enqueues) do
  local id = row[1]
  if redis.call('EXISTS', B .. 'j:' .. id) == 0 and claim_unique(row[6], row[7], id, tonumber(now)) then
    insert(id, row[3], row[4], row[5], row[6], row[2], redis.call('INCR', KEYS[1]), row[8], row[9], row[10])
    woken[row[3]] = (woken[row[3]] or 0) + 1
  end
  if row[11] ~= '' then redis.call('SADD', B .. 'wf:' .. row[11] .. ':j', id) end
end
for wq, n in pairs(woken) do wake(wq, n) end
for _, row in ipairs(failures) do store_failed(row[1], row[2], row[3], row[4], now, '0') end
for _, row in ipairs(locks) do redis.call('DEL', B .. 'wfl:' .. row[1]) end
return 'ok'
"""

#: ARGV: B, token, lock ms, id. Takes the record's lock if free: returns {1, the record's JSON
#: (false if none)}, or {0} while another transaction holds it.
LOCK = r"""
local lk = B .. 'wfl:' .. ARGV[4]
if not redis.call('SET', lk, ARGV[2], 'NX', 'PX', ARGV[3]) then return {0} end
return {1, redis.call('HGET', B .. 'wf:' .. ARGV[4], 'd')}
"""

#: ARGV: B, token, ids... Releases the transaction's locks and the watch marks it set (a block
#: that raised, a commit that wrote nothing).
UNLOCK = r"""
for k = 3, #ARGV do
  local lk = B .. 'wfl:' .. ARGV[k]
  if redis.call('GET', lk) == ARGV[2] then redis.call('DEL', lk) end
  local jk = B .. 'j:' .. ARGV[k]
  if redis.call('HGET', jk, 'v') == ARGV[2] then redis.call('HDEL', jk, 'v') end
end
return 1
"""

#: ARGV: B, job id, token, "1" to mark. A stored job: {1, its body}, or with "1" marks it
#: watched by the token: {2}. A job no longer stored: {0, its kept record or false, its
#: failed_at or false}.
WATCH = r"""
local id = ARGV[2]
local jk = B .. 'j:' .. id
local body = redis.call('HGET', jk, 'b')
if body then
  if ARGV[4] ~= '1' then return {1, body} end
  redis.call('HSET', jk, 'v', ARGV[3])
  return {2}
end
return {0, redis.call('GET', B .. 'r:' .. id), redis.call('HGET', B .. 'f:' .. id, 't')}
"""

#: ARGV: B, cutoff. Deletes the workflow records finished before the cutoff (with their job-id
#: sets); returns how many. Records still running are not in ``wff``: never pruned.
PRUNE = r"""
local cutoff = '(' .. ARGV[2]
local old = redis.call('ZRANGEBYSCORE', B .. 'wff', '-inf', cutoff)
for _, id in ipairs(old) do
  local wk = B .. 'wf:' .. id
  local kind = redis.call('HGET', wk, 'k')
  redis.call('ZREM', B .. 'wfs', id)
  if kind then redis.call('ZREM', B .. 'wfs:' .. kind, id) end
  redis.call('DEL', wk, wk .. ':j')
  redis.call('ZREM', B .. 'wff', id)
end
return #old
"""

#: Script name -> source (each after PRELUDE and the status scripts' HELPERS).
ALL: dict[str, str] = {
    "workflow_commit": COMMIT,
    "workflow_lock": LOCK,
    "workflow_unlock": UNLOCK,
    "workflow_watch": WATCH,
    "workflow_prune": PRUNE,
}
