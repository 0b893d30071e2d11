"""RQ on Redis: ``rq worker``, and ``rq worker-pool`` for 4 at a time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from record import record
from redis import Redis
from rq import Queue

URL = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:6379/9")
CHUNK = 1000
ENQUEUE = "`Queue.enqueue_many` (one Redis pipeline), 1,000 jobs a call"
WORKER = "`rq worker bench` (default: one worker, a forked work horse per job); `rq worker-pool -n 4 bench`"

queue = Queue("bench", connection=Redis.from_url(URL))


def noop(t: float) -> None:
    record(t)


def enqueue_many(count: int) -> None:
    queue.enqueue_many([Queue.prepare_data(noop, (0.0,)) for _ in range(count)])


def enqueue_one(t: float) -> None:
    queue.enqueue(noop, t)


def worker_argv(concurrency: int | None) -> list[str]:
    rq = str(Path(sys.executable).with_name("rq"))
    if concurrency:
        return [rq, "worker-pool", "-u", URL, "-n", str(concurrency), "bench"]
    return [rq, "worker", "-u", URL, "bench"]
