"""huey with its SQLite storage (``SqliteHuey``): ``huey_consumer peer_huey.huey``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from huey import SqliteHuey
from record import record

CHUNK = 1000
ENQUEUE = "one task call per job (huey has no bulk enqueue)"
WORKER = "`huey_consumer peer_huey.huey` (default: 1 worker thread, polling from 0.1 s); `-w 4`"

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_PEERS_URL", "huey.db"))


@huey.task()
def noop(t: float) -> None:
    record(t)


def enqueue_many(count: int) -> None:
    for _ in range(count):
        noop(0.0)


def enqueue_one(t: float) -> None:
    noop(t)


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [str(Path(sys.executable).with_name("huey_consumer")), "peer_huey.huey"]
    return argv + (["-w", str(concurrency)] if concurrency else [])
