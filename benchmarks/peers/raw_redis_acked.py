"""The at-least-once limit on Redis: :func:`raw_redis.work_acknowledged`, same enqueue as ``raw_redis``."""

from __future__ import annotations

import raw_redis
from raw_redis import CHUNK, enqueue_many, enqueue_one

ENQUEUE = raw_redis.ENQUEUE
WORKER = (
    "one loop: a Lua script moves up to 100 values to the worker's processing list, `DEL` of it "
    "once the batch ran (sent with the next move), `BLMOVE` when empty; at 4: a pool of 4 threads"
)

__all__ = ["CHUNK", "ENQUEUE", "WORKER", "enqueue_many", "enqueue_one", "work", "worker_argv"]


def work(concurrency: int | None) -> None:
    raw_redis.work_acknowledged(concurrency)


def worker_argv(concurrency: int | None) -> list[str]:
    return raw_redis.worker_argv(concurrency, "raw_redis_acked")
