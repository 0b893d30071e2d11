"""The limit on Redis: a bare redis-py loop over one list, no library.

Enqueue: one ``LPUSH`` of 5,000 values (bulk) or of one. The worker pops up
to 100 values per ``RPOP key 100`` (gone once popped: at-most-once), runs
them, and blocks in ``BRPOP`` when the list is empty. At concurrency 4 the
values of a batch go to a pool of 4 threads.

:func:`work_acknowledged` is the cheapest at-least-once loop (the entry "raw
loop, acknowledged", module ``raw_redis_acked``): one small Lua script moves
up to 100 values from the list to the worker's own processing list, and the
batch is deleted from there only once every job of it ran, with a ``DEL``
sent in the same round trip as the next move (``BLMOVE`` of one value when
the list is empty). A worker that dies leaves its batch in its processing
list, for a recovery step (not part of the loop) to push back. It has no
leases, retries, priorities, delays or results.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from record import record
from redis import Redis

URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:6379/9")
KEY = "raw_jobs"
#: Moves up to ARGV[1] values from the tail of KEYS[1] to KEYS[2] (a worker's processing
#: list) and returns them, oldest first.
MOVE = """
local v = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
if #v == 0 then return v end
redis.call('LTRIM', KEYS[1], 0, -#v - 1)
redis.call('LPUSH', KEYS[2], unpack(v))
local out = {}
for i = #v, 1, -1 do out[#out + 1] = v[i] end
return out
"""
CHUNK = 5000
ENQUEUE = "one `LPUSH` of 5,000 values"
WORKER = "one loop: `RPOP raw_jobs 100`, `BRPOP` when empty; at 4: a pool of 4 threads"

client = Redis.from_url(URL)


def enqueue_many(count: int) -> None:
    client.lpush(KEY, *([b"0"] * count))


def enqueue_one(t: float) -> None:
    client.lpush(KEY, repr(t))


def work(concurrency: int | None) -> None:
    pool = ThreadPoolExecutor(concurrency) if concurrency else None
    while True:
        values = client.rpop(KEY, 100)
        if not values:
            popped = client.brpop([KEY], timeout=1)
            values = [popped[1]] if popped else []
        rows = [float(v) for v in values]
        if pool is None:
            for t in rows:
                record(t)
        else:
            list(pool.map(record, rows))


def work_acknowledged(concurrency: int | None) -> None:
    """At-least-once: a batch is moved to this worker's list, and deleted from it once it ran."""
    pool = ThreadPoolExecutor(concurrency) if concurrency else None
    processing = f"raw_jobs_processing:{os.getpid()}"
    move = client.register_script(MOVE)
    finished = False  # whether the processing list holds a batch that ran
    while True:
        pipe = client.pipeline(transaction=False)
        if finished:
            pipe.delete(processing)  # the acknowledgement, in the same round trip as the next move
        move(keys=[KEY, processing], args=[100], client=pipe)
        values = pipe.execute()[-1]
        if not values:
            moved = client.blmove(KEY, processing, 1, "RIGHT", "LEFT")
            values = [moved] if moved is not None else []
        rows = [float(v) for v in values]
        if pool is None:
            for t in rows:
                record(t)
        else:
            list(pool.map(record, rows))
        finished = bool(rows)


def worker_argv(concurrency: int | None, module: str = "raw_redis") -> list[str]:
    client_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
    return [sys.executable, client_py, module, "work", str(concurrency or "default")]
