"""What every backend's benchmark shares: the jobs, the three measurements, the worker process.

A backend module (``database.py``, ``kafka.py``) builds its URL and calls
:func:`measure` with a :class:`Backend` describing its few differences; its
``__main__`` hands ``worker ...`` arguments to :func:`worker_main`. In order:

* idle latency: with a worker process waiting on an empty queue, jobs are
  dispatched one at a time, ~20 ms apart; each records ``start - dispatch``.
  It runs first, while the backend is quiet;
* bulk enqueue: ``JobsApp.dispatch_many`` of no-op jobs in chunks of 5,000,
  from one thread, then from two threads sharing the app;
* drain: one worker process (``jobs_core`` :class:`Worker`, concurrency 1,
  default prefetch) runs ``jobs`` pre-queued no-op jobs until the queue is
  empty; jobs/s of wall time inside the worker, and its CPU time per job;
  then the same at concurrency 4 and 8 (and, where a backend names them,
  at concurrency 8 with settings of its own, e.g. Kafka's ``max_in_flight=8``);
* I/O-bound jobs: ``io_jobs`` ``async def`` jobs that sleep 10 ms, drained by
  one worker process at concurrency 200, and a quarter as many sync jobs
  sleeping 10 ms at concurrency 32 (the ceilings: 20,000 and 3,200 jobs/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp

CHUNK = 5000
WARM_UP = 20

_LATENCY_FILE: int | None = None


@job(name="bench.noop")
def noop(payload: Any) -> None:
    """Does nothing."""


@job(name="bench.sleep_async")
async def sleep_async(payload: Any) -> None:
    """Waits 10 ms without holding a thread."""
    await asyncio.sleep(0.01)


@job(name="bench.sleep_sync")
def sleep_sync(payload: Any) -> None:
    """Blocks its thread for 10 ms."""
    time.sleep(0.01)


JOBS = {"noop": noop, "sleep_async": sleep_async, "sleep_sync": sleep_sync}


@job(name="bench.latency")
def latency(payload: Any) -> None:
    """Records how long ago the job was dispatched."""
    started = time.time()
    assert _LATENCY_FILE is not None
    os.write(_LATENCY_FILE, f"{(started - payload['t']) * 1000:.4f}\n".encode())


@dataclass
class Backend:
    """How one backend's benchmark differs from the others."""

    #: The module whose ``__main__`` runs :func:`worker_main` (its ``__file__``).
    worker_script: str
    #: Purge the bulk-enqueue queue afterwards (cheap on databases).
    purge_after_enqueue: bool = True
    #: Dispatch one job before the idle worker starts, so that its queue exists.
    create_queue_first: bool = False
    #: In the worker process: wait until it can consume ``queue``; return extra worker options.
    prepare_worker: Callable[[JobsApp, str], dict[str, Any]] = field(
        default=lambda app, queue: (app.driver.ping(), {})[1]
    )
    #: Extra no-op drains at concurrency 8: figure name -> URL query the worker adds.
    extra_drains: dict[str, str] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _worker_args(url: str, queue: str, mode: str, out: str, concurrency: int = 1) -> list[str]:
    return ["--url", url, "--queue", queue, "--mode", mode, "--out", out, "--concurrency", str(concurrency)]


def _spawn(
    backend: Backend, url: str, queue: str, mode: str, out: str, concurrency: int = 1
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, backend.worker_script, "worker", *_worker_args(url, queue, mode, out, concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _drain(
    app: JobsApp, backend: Backend, url: str, scratch: str, name: str, jobs: int, concurrency: int
) -> tuple[float, float]:
    """Jobs/s and worker CPU µs per job of one worker process draining ``jobs`` pre-queued jobs."""
    queue = f"bench-drain-{uuid.uuid4().hex[:8]}"
    for start in range(0, jobs, CHUNK):
        app.dispatch_many(JOBS[name], [{"i": i} for i in range(start, min(jobs, start + CHUNK))], queue=queue)
    out = os.path.join(scratch, f"drain-{queue}.json")
    _spawn(backend, url, queue, "drain", out, concurrency).wait(timeout=900)
    result = json.loads(Path(out).read_text())
    if result["jobs"] != jobs:
        raise RuntimeError(f"drain ran {result['jobs']} jobs, expected {jobs}")
    return result["jobs"] / result["seconds"], result["cpu"] / result["jobs"] * 1e6


def _wait_lines(path: str, count: int, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = Path(path).read_text().split()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def _bulk_enqueue(app: JobsApp, queue: str, total: int, threads: int) -> float:
    """Jobs/s of ``threads`` threads each calling ``dispatch_many`` with chunks of CHUNK."""
    payloads = [{"i": i} for i in range(CHUNK)]
    app.dispatch_many(noop, payloads, queue=queue)  # warm-up: schema, connections, caches, bulk path
    share = total // threads

    def produce() -> None:
        done = 0
        while done < share:
            app.dispatch_many(noop, payloads[: min(CHUNK, share - done)], queue=queue)
            done += min(CHUNK, share - done)

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return share * threads / (time.perf_counter() - started)


def _idle_latency(
    app: JobsApp, url: str, options: dict[str, Any], backend: Backend, scratch: str
) -> list[float]:
    """Enqueue-to-start latencies (ms) of jobs dispatched one at a time to an idle worker process."""
    queue = f"bench-latency-{uuid.uuid4().hex[:8]}"
    out = os.path.join(scratch, "latency.txt")
    Path(out).write_text("")
    warm_up = WARM_UP
    if backend.create_queue_first:
        app.dispatch(latency, {"t": time.time()}, queue=queue)
        warm_up += 1
    proc = _spawn(backend, url, queue, "idle", out)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        samples = int(options["latency_samples"])
        for _ in range(WARM_UP):
            app.dispatch(latency, {"t": time.time()}, queue=queue)
            time.sleep(0.02)
        _wait_lines(out, warm_up)
        Path(out).write_text("")
        for _ in range(samples):
            app.dispatch(latency, {"t": time.time()}, queue=queue)
            time.sleep(0.02)
        lines = _wait_lines(out, samples)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return [float(v) for v in lines[:samples]]


def _latency_and_enqueue(
    app: JobsApp, url: str, options: dict[str, Any], backend: Backend, scratch: str, figures: dict[str, float]
) -> None:
    # idle latency first, on a quiet backend: right after the bulk runs, a
    # database is still writing their pages out (a PostgreSQL checkpoint),
    # which slows every commit that waits for the disk
    values = _idle_latency(app, url, options, backend, scratch)
    figures["latency_p50_ms"] = statistics.median(values)
    figures["latency_p99_ms"] = percentile(values, 0.99)

    # bulk enqueue: one producer thread, then two
    total = int(options["enqueue_jobs"])
    filled = []
    for key, threads in (("bulk_enqueue_per_s", 1), ("bulk_enqueue_2t_per_s", 2)):
        filled.append(f"bench-enqueue-{uuid.uuid4().hex[:8]}")
        figures[key] = _bulk_enqueue(app, filled[-1], total, threads)
    if backend.purge_after_enqueue:  # afterwards: the clean-up must not slow a measurement
        for queue in filled:
            app.purge(queue)


def measure(url: str, options: dict[str, Any], backend: Backend) -> dict[str, float]:
    """Run the three measurements against ``url``; return the figures named in run.py."""
    scratch = tempfile.mkdtemp(prefix="jobs-bench-")
    figures: dict[str, float] = {}
    app = JobsApp(url)
    try:
        app.register(noop)
        app.register(latency)
        app.driver.ping()

        if not options.get("drain_only"):
            _latency_and_enqueue(app, url, options, backend, scratch, figures)

        # drain: no-op jobs at concurrency 1 and 4, then I/O-bound jobs
        jobs = int(options["jobs"])
        figures["drain_per_s"], figures["cpu_us_per_job"] = _drain(
            app, backend, url, scratch, "noop", jobs, 1
        )
        figures["drain_c4_per_s"], figures["cpu_c4_us_per_job"] = _drain(
            app, backend, url, scratch, "noop", jobs, 4
        )
        figures["drain_c4_ratio"] = figures["drain_c4_per_s"] / figures["drain_per_s"]
        figures["drain_c8_per_s"], _ = _drain(app, backend, url, scratch, "noop", jobs, 8)
        figures["drain_c8_ratio"] = figures["drain_c8_per_s"] / figures["drain_per_s"]
        for name, query in backend.extra_drains.items():
            varied = url + ("&" if "?" in url else "?") + query
            figures[name], _ = _drain(app, backend, varied, scratch, "noop", jobs, 8)
        io_jobs = int(options.get("io_jobs") or 0)
        if io_jobs:
            figures["io_async_per_s"], _ = _drain(app, backend, url, scratch, "sleep_async", io_jobs, 200)
            figures["io_sync_per_s"], _ = _drain(app, backend, url, scratch, "sleep_sync", io_jobs // 4, 32)

    finally:
        app.close()
    return figures


def worker_main(argv: list[str], backend: Backend) -> int:
    """The worker process: ``drain`` until empty, or ``idle`` until SIGTERM."""
    global _LATENCY_FILE
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--mode", choices=["drain", "idle"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    app = JobsApp(args.url)
    for function in (*JOBS.values(), latency):
        app.register(function)
    extra = backend.prepare_worker(app, args.queue)
    if args.mode == "drain":
        worker = app.worker(
            args.queue,
            stop_when_empty=True,
            install_signal_handlers=False,
            concurrency=args.concurrency,
            **extra,
        )
        cpu, wall = time.process_time(), time.perf_counter()
        handled = worker.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        Path(args.out).write_text(json.dumps({"jobs": handled, "seconds": wall, "cpu": cpu}))
    else:
        _LATENCY_FILE = os.open(args.out, os.O_WRONLY | os.O_APPEND)
        worker = app.worker(args.queue)
        print("ready", flush=True)
        worker.run()
    app.close()
    return 0
