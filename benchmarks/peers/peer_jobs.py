"""This project (jobs) on PostgreSQL, SQLite, Redis or Kafka: the same job as every peer's."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp
from record import record

BACKEND = os.environ.get("BENCH_PEERS_BACKEND", "sqlite")
TARGET = os.environ.get("BENCH_PEERS_URL", "")
QUEUE = "bench"
CHUNK = 5000
ENQUEUE = "`JobsApp.dispatch_many`, 5,000 jobs a call"
WORKER = "`jobsctl worker --import peer_jobs --queue bench` (default concurrency 1); `--concurrency 4`"

#: The Tansu test broker's fast settings, as in benchmarks/kafka.py and the test suite.
TANSU = "session.timeout.ms=2000&heartbeat.interval.ms=200&fetch.wait.max.ms=100"


@job(name="bench.record")
def noop(payload: Any) -> None:
    record(payload["t"])


def url() -> str:
    if BACKEND == "postgresql":
        return TARGET.replace("postgresql://", "postgresql+psycopg://", 1)
    if BACKEND == "sqlite":
        return f"sqlite:///{TARGET}"
    if BACKEND == "redis":
        return TARGET
    return f"kafka://{TARGET}?{TANSU}"


_app: JobsApp | None = None


def app() -> JobsApp:
    global _app
    if _app is None:
        _app = JobsApp(url())
        _app.register(noop)
    return _app


def enqueue_many(count: int) -> None:
    app().dispatch_many(noop, [{"t": 0.0} for _ in range(count)], queue=QUEUE)


def enqueue_one(t: float) -> None:
    app().dispatch(noop, {"t": t}, queue=QUEUE)


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [str(Path(sys.executable).with_name("jobsctl")), "worker", "--url", url()]
    argv += ["--import", "peer_jobs", "--queue", QUEUE]
    return argv + (["--concurrency", str(concurrency)] if concurrency else [])


def close() -> None:
    if _app is not None:
        _app.close()
