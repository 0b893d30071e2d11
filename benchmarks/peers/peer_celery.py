"""Celery on Redis, or on Kafka through kombu's confluent-kafka transport.

The worker: ``celery -A peer_celery worker``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery
from record import record

BACKEND = os.environ.get("BENCH_PEERS_BACKEND", "redis")
TARGET = os.environ.get("BENCH_PEERS_URL", "redis://127.0.0.1:6379/9")
CHUNK = 1000
ENQUEUE = "`Task.delay` per job (Celery has no bulk enqueue; a `group` sends one message per task too)"
WORKER = "`celery -A peer_celery worker` (default: prefork, one process per CPU, 2 here); `-c 4`"

if BACKEND == "kafka":
    app = Celery("bench", broker=f"confluentkafka://{TARGET}")
    # The Tansu test broker's fast consumer-group settings, as every Kafka entry here uses.
    app.conf.broker_transport_options = {
        "kafka_consumer_config": {
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 200,
            "fetch.wait.max.ms": 100,
        }
    }
else:
    app = Celery("bench", broker=TARGET)


@app.task(name="noop")
def noop(t: float) -> None:
    record(t)


def enqueue_many(count: int) -> None:
    for _ in range(count):
        noop.delay(0.0)


def enqueue_one(t: float) -> None:
    noop.delay(t)


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [str(Path(sys.executable).with_name("celery")), "-A", "peer_celery", "worker"]
    return argv + (["-c", str(concurrency)] if concurrency else [])
