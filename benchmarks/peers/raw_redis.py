"""The limit on Redis: a bare redis-py loop over one list, no library.

Enqueue: one ``LPUSH`` of 5,000 values (bulk) or of one. The worker pops up
to 100 values per ``RPOP key 100`` (gone once popped: at-most-once), runs
them, and blocks in ``BRPOP`` when the list is empty. At concurrency 4 the
values of a batch go to a pool of 4 threads.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from record import record
from redis import Redis

URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:6379/9")
KEY = "raw_jobs"
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


def worker_argv(concurrency: int | None) -> list[str]:
    client_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
    return [sys.executable, client_py, "raw_redis", "work", str(concurrency or "default")]
