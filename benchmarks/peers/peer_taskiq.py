"""taskiq with taskiq-redis's ``RedisStreamBroker``, the broker of its README.

The worker: ``taskiq worker peer_taskiq:broker``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from record import record
from taskiq_redis import RedisStreamBroker

CHUNK = 1000
ENQUEUE = "`await task.kiq()` per job, 1,000 at a time under `asyncio.gather` (taskiq has no bulk enqueue)"
WORKER = (
    "`taskiq worker peer_taskiq:broker` (default: 2 worker processes, 100 async tasks each); "
    "`--workers 1 --max-async-tasks 4`"
)

broker = RedisStreamBroker(url=os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:6379/9"))


@broker.task(task_name="noop")
async def noop(t: float) -> None:
    record(t)


_loop = asyncio.new_event_loop()
_started = False


def _start() -> None:
    global _started
    if not _started:
        _loop.run_until_complete(broker.startup())
        _started = True


def enqueue_many(count: int) -> None:
    _start()

    async def send() -> None:
        await asyncio.gather(*(noop.kiq(0.0) for _ in range(count)))

    _loop.run_until_complete(send())


def enqueue_one(t: float) -> None:
    _start()
    _loop.run_until_complete(noop.kiq(t))


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [str(Path(sys.executable).with_name("taskiq")), "worker", "peer_taskiq:broker"]
    return argv + (["--workers", "1", "--max-async-tasks", str(concurrency)] if concurrency else [])


def close() -> None:
    if _started:
        _loop.run_until_complete(broker.shutdown())
