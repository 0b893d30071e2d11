"""The enqueueing side of a peer benchmark, run in its own process for each phase.

``python client.py MODULE COMMAND [ARG]`` imports ``MODULE`` (``peer_*`` or
``raw_*`` in this directory), which configures its library from the
``BENCH_PEERS_*`` environment variables that ``run.py`` sets, then:

* ``setup``: creates what the library needs in the fresh backend (schema, topic);
* ``bulk TOTAL SECONDS``: enqueues one chunk to warm up, then ``TOTAL`` jobs in
  the module's chunks, stopping early after ``SECONDS``; prints
  ``{"jobs": n, "seconds": s}``;
* ``fill N``: enqueues ``N`` jobs, untimed (before a drain);
* ``latency SAMPLES``: with a worker running, enqueues jobs one at a time,
  ~20 ms apart (after warm-up jobs, which are not counted), and prints the
  enqueue-to-start latencies in ms, read from the lines the jobs wrote;
* ``argv CONCURRENCY``: prints the worker's command line (``default`` or a number);
* ``describe``: prints how the module enqueues and runs its worker (for the table);
* ``work CONCURRENCY``: the worker loop itself (raw loops only).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

WARM_UP = 20
INTERVAL = 0.02


def lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path: str, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = lines(path)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def bulk(module: ModuleType, total: int, seconds: float) -> dict[str, float]:
    chunk = int(module.CHUNK)
    module.enqueue_many(min(chunk, total))  # warm-up: connections, caches, first statements
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while done < total and time.perf_counter() < deadline:
        count = min(chunk, total - done)
        module.enqueue_many(count)
        done += count
    return {"jobs": done, "seconds": time.perf_counter() - started}


def latency(module: ModuleType, samples: int) -> list[float]:
    out = os.environ["BENCH_PEERS_OUT"]
    sent = 0
    deadline = time.monotonic() + 120
    while not lines(out):  # until the worker runs jobs
        if time.monotonic() > deadline:
            raise SystemExit("the worker ran no job within 120 s")
        module.enqueue_one(0.0)
        sent += 1
        time.sleep(0.1)
    for _ in range(WARM_UP):
        module.enqueue_one(0.0)
        sent += 1
        time.sleep(INTERVAL)
    base = len(wait_lines(out, sent, 60))
    for _ in range(samples):
        module.enqueue_one(time.time())
        time.sleep(INTERVAL)
    found = wait_lines(out, base + samples, 60)
    values = []
    for line in found[base:]:
        ran, enqueued = (float(v) for v in line.split())
        if enqueued:
            values.append((ran - enqueued) * 1000)
    if len(values) < samples:
        raise SystemExit(f"only {len(values)} of {samples} latency jobs ran within 60 s")
    return values


def main(argv: list[str]) -> int:
    name, command, *args = argv
    module = importlib.import_module(name)
    try:
        if command == "setup":
            getattr(module, "setup", lambda: None)()
        elif command == "bulk":
            print(json.dumps(bulk(module, int(args[0]), float(args[1]))))
        elif command == "fill":
            total, chunk = int(args[0]), int(module.CHUNK)
            for start in range(0, total, chunk):
                module.enqueue_many(min(chunk, total - start))
        elif command == "latency":
            print(json.dumps(latency(module, int(args[0]))))
        elif command == "argv":
            concurrency = None if args[0] == "default" else int(args[0])
            print(json.dumps(module.worker_argv(concurrency)))
        elif command == "describe":
            print(json.dumps({"enqueue": module.ENQUEUE, "worker": module.WORKER}))
        elif command == "work":
            module.work(None if args[0] == "default" else int(args[0]))
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        getattr(module, "close", lambda: None)()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
