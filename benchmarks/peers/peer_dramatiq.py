"""Dramatiq with its Redis broker: ``dramatiq peer_dramatiq``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from record import record

CHUNK = 1000
ENQUEUE = "`actor.send` per job (Dramatiq has no bulk enqueue; a `group` sends one message per actor too)"
WORKER = "`dramatiq peer_dramatiq` (default: one process per CPU, 2 here, 8 threads each); `-p 1 -t 4`"

dramatiq.set_broker(RedisBroker(url=os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:6379/9")))


@dramatiq.actor(actor_name="noop")
def noop(t: float) -> None:
    record(t)


def enqueue_many(count: int) -> None:
    for _ in range(count):
        noop.send(0.0)


def enqueue_one(t: float) -> None:
    noop.send(t)


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [str(Path(sys.executable).with_name("dramatiq")), "peer_dramatiq"]
    return argv + (["-p", "1", "-t", str(concurrency)] if concurrency else [])
