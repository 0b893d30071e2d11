"""Peer benchmark: ``nox -s bench-peers`` or ``python benchmarks/peers/run.py``.

Measures this project against the libraries a user would pick instead on the
same backend, and a raw loop per backend as the limit (on Redis also an
acknowledged one, at-least-once like this project), with one method for all
(see docs/performance.md, "Against other libraries"):

* bulk enqueue: no-op jobs through the fastest documented way each library
  offers, in its chunks, ``--enqueue-jobs`` in all (at most ``--bound``
  seconds, then normalised), after one chunk to warm up;
* drain: ``--drain-jobs`` no-op jobs queued first, then the library's own
  worker process (its CLI) at its default concurrency and at 4; jobs/s from
  the first to the last job's completion, as the jobs recorded them;
* idle latency: with the worker waiting on an empty queue,
  ``--latency-samples`` jobs enqueued one at a time ~20 ms apart; each job
  records when it started; p50 and p99 of start - enqueue.

Every job does the same thing: append one line to a file (``record.py``).
Each phase runs on a fresh backend (a new PostgreSQL database, a new SQLite
file, an emptied Redis database, a new Tansu broker). Pick entries with
``--only BACKEND[/LIBRARY]`` (repeatable); ``--json FILE`` keeps the figures.

    python benchmarks/peers/run.py --only postgresql --drain-jobs 2000
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIENT = str(HERE / "client.py")

POSTGRESQL = os.environ.get("BENCH_PEERS_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_PEERS_REDIS", "redis://127.0.0.1:6379/9")


@dataclass
class Entry:
    backend: str
    library: str
    module: str
    distribution: str
    #: A smaller drain for a library far slower than the others (the figure is a rate either way).
    drain_jobs: int | None = None


ENTRIES = [
    Entry("postgresql", "jobs", "peer_jobs", "jobs-core"),
    Entry("postgresql", "pgqueuer", "peer_pgqueuer", "pgqueuer"),
    Entry("postgresql", "procrastinate", "peer_procrastinate", "procrastinate"),
    Entry("postgresql", "raw loop", "raw_postgresql", "psycopg"),
    Entry("sqlite", "jobs", "peer_jobs", "jobs-core"),
    Entry("sqlite", "huey", "peer_huey", "huey"),
    Entry("sqlite", "raw loop", "raw_sqlite", ""),
    Entry("redis", "jobs", "peer_jobs", "jobs-redis"),
    Entry("redis", "celery", "peer_celery", "celery"),
    Entry("redis", "taskiq", "peer_taskiq", "taskiq-redis"),
    Entry("redis", "dramatiq", "peer_dramatiq", "dramatiq"),
    Entry("redis", "rq", "peer_rq", "rq", drain_jobs=2000),
    Entry("redis", "raw loop", "raw_redis", "redis"),
    Entry("redis", "raw loop, acknowledged", "raw_redis_acked", "redis"),
    Entry("kafka", "jobs", "peer_jobs", "jobs-kafka"),
    Entry("kafka", "celery", "peer_celery", "celery"),
    Entry("kafka", "raw loop", "raw_kafka", "confluent-kafka"),
]


def version(entry: Entry) -> str:
    if not entry.distribution:
        import sqlite3

        return f"sqlite3 {sqlite3.sqlite_version}"
    names = [entry.distribution]
    if entry.library == "taskiq":
        names = ["taskiq", "taskiq-redis"]
    elif entry.library == "celery":
        names = ["celery", "kombu"] + (["confluent-kafka"] if entry.backend == "kafka" else [])
    elif entry.distribution == "redis":
        names = ["redis"]
    try:
        return ", ".join(f"{n} {importlib.metadata.version(n)}" for n in names)
    except importlib.metadata.PackageNotFoundError as exc:
        return f"not installed ({exc})"


def machine() -> str:
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    calibration = min(timeit.repeat("sum(range(10_000))", number=200, repeat=5)) / 200 * 1e6
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}; "
        f"calibration: sum(range(10_000)) takes {calibration:.0f} µs; load average {load:.2f}"
    )


# -- fresh backends ------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_backend(backend: str, scratch: Path) -> Iterator[str]:
    """A clean backend for one phase; yields the URL (or path, or bootstrap) the modules get."""
    if backend == "postgresql":
        import psycopg

        name = f"bench_peers_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRESQL, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            yield POSTGRESQL.rsplit("/", 1)[0] + "/" + name
        finally:
            with psycopg.connect(POSTGRESQL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    elif backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="sqlite-", dir=scratch))
        try:
            yield str(folder / "bench.db")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif backend == "redis":
        import redis

        client = redis.Redis.from_url(REDIS)
        client.flushdb()
        try:
            yield REDIS
        finally:
            client.flushdb()
            client.close()
    elif backend == "kafka":
        from jobs_kafka.testing.broker import TansuBroker

        with TansuBroker.start() as broker:
            yield broker.bootstrap
    else:
        raise ValueError(backend)


# -- processes -----------------------------------------------------------------------------------


class Phase:
    """One phase of one entry: a fresh backend, the environment, the record file."""

    def __init__(self, entry: Entry, url: str, scratch: Path) -> None:
        self.entry = entry
        self.scratch = scratch
        self.out = scratch / f"record-{uuid.uuid4().hex[:8]}.txt"
        self.out.write_text("")
        self.env = {
            **os.environ,
            "BENCH_PEERS_BACKEND": entry.backend,
            "BENCH_PEERS_URL": url,
            "BENCH_PEERS_OUT": str(self.out),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }

    def client(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, CLIENT, self.entry.module, *args],
            check=False,
            env=self.env,
            cwd=self.scratch,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(args[:1])} failed: {' / '.join(tail)}")
        return done.stdout

    @contextlib.contextmanager
    def worker(self, concurrency: str) -> Iterator[subprocess.Popen[bytes]]:
        argv = json.loads(self.client("argv", concurrency))
        log = (self.scratch / f"worker-{self.entry.module}-{concurrency}.log").open("ab")
        proc = subprocess.Popen(
            argv, env=self.env, cwd=self.scratch, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc)
            log.close()

    def records(self) -> list[tuple[float, float]]:
        rows = []
        for line in self.out.read_text().splitlines():
            ran, enqueued = line.split()
            rows.append((float(ran), float(enqueued)))
        return rows


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (its children too), SIGKILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    with contextlib.suppress(ProcessLookupError):  # children left behind by a worker that exited
        os.killpg(proc.pid, signal.SIGKILL)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the measurements ----------------------------------------------------------------------------


def measure(entry: Entry, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """The four phases of one entry, each on a fresh backend; a failed phase is noted, not fatal."""
    figures: dict[str, Any] = {"errors": {}}

    def phase(key: str, body: Any) -> None:
        try:
            with fresh_backend(entry.backend, scratch) as url:
                current = Phase(entry, url, scratch)
                current.client("setup")
                body(current)
        except Exception as exc:
            figures["errors"][key] = f"{type(exc).__name__}: {exc}"

    def latency(current: Phase) -> None:
        figures.update(json.loads(current.client("describe")))
        with current.worker("default"):
            values = json.loads(current.client("latency", str(args.latency_samples)))
        figures["latency_p50_ms"] = statistics.median(values)
        figures["latency_p99_ms"] = percentile(values, 0.99)

    def bulk(current: Phase) -> None:
        result = json.loads(current.client("bulk", str(args.enqueue_jobs), str(args.bound)))
        figures["enqueue_per_s"] = result["jobs"] / result["seconds"]
        figures["enqueue_jobs"] = result["jobs"]

    jobs = min(args.drain_jobs, entry.drain_jobs or args.drain_jobs)

    def drain(key: str, concurrency: str) -> Any:
        def body(current: Phase) -> None:
            current.client("fill", str(jobs))
            deadline = time.monotonic() + args.bound * 3
            with current.worker(concurrency) as proc:
                while True:
                    count = len(current.out.read_bytes().splitlines())
                    if count >= jobs or time.monotonic() > deadline or proc.poll() is not None:
                        break
                    time.sleep(0.05)
            ran = sorted(r for r, _ in current.records())
            if len(ran) < 2:
                raise RuntimeError(f"the worker ran {len(ran)} of {jobs} jobs (its log: {scratch}/worker-*)")
            figures[f"{key}_per_s"] = (len(ran) - 1) / (ran[-1] - ran[0])
            figures[f"{key}_jobs"] = f"{min(len(ran), jobs)} of {jobs}"

        return body

    phase("latency", latency)
    phase("bulk enqueue", bulk)
    phase("drain", drain("drain", "default"))
    phase("drain at 4", drain("drain_c4", "4"))
    if not figures["errors"]:
        del figures["errors"]
    return figures


# -- the tables ----------------------------------------------------------------------------------

COLUMNS = [
    ("enqueue_per_s", "bulk enqueue (jobs/s)", "{:,.0f}", True),
    ("drain_per_s", "drain, default concurrency (jobs/s)", "{:,.0f}", True),
    ("drain_c4_per_s", "drain, concurrency 4 (jobs/s)", "{:,.0f}", True),
    ("latency_p50_ms", "idle latency p50 (ms)", "{:.2f}", False),
    ("latency_p99_ms", "idle latency p99 (ms)", "{:.2f}", False),
]


def _ratio_line(
    backend: str, label: str, values: dict[str, Any], bases: dict[str, Any], names: dict[str, str]
) -> str:
    cells = []
    for key, _, _, _ in COLUMNS:
        value, base = values.get(key), bases.get(key)
        if value is None or not base:
            cells.append("n/a")
        else:
            cells.append(f"{value / base:.2f}" + (f" ({names[key]})" if key in names else ""))
    return f"| {backend} | {label} | " + " | ".join(cells) + " |"


def tables(results: list[tuple[Entry, str, dict[str, Any]]], drain_jobs: int) -> str:
    out = ["| backend | library | " + " | ".join(t for _, t, _, _ in COLUMNS) + " |"]
    out.append("|---|---|" + "---:|" * len(COLUMNS))
    for entry, ver, figures in results:
        if "error" in figures:
            cells = [f"not measured: {figures['error']}"] + [""] * (len(COLUMNS) - 1)
        else:
            cells = [fmt.format(figures[key]) if key in figures else "failed" for key, _, fmt, _ in COLUMNS]
            for index, (key, _, _, _) in enumerate(COLUMNS):
                ran = figures.get(key.replace("_per_s", "_jobs"))
                if isinstance(ran, str) and ran != f"{drain_jobs} of {drain_jobs}":
                    cells[index] += f" ({ran} jobs)"  # a smaller drain, or stopped at the time bound
        out.append(f"| {entry.backend} | {entry.library} ({ver}) | " + " | ".join(cells) + " |")

    out += ["", "| backend | ratio | " + " | ".join(t for _, t, _, _ in COLUMNS) + " |"]
    out.append("|---|---|" + "---:|" * len(COLUMNS))
    for backend in dict.fromkeys(e.backend for e, _, _ in results):
        rows = {e.library: f for e, _, f in results if e.backend == backend and "error" not in f}
        raw = rows.pop("raw loop", None) or {}
        acked = rows.pop("raw loop, acknowledged", None) or {}
        ours = rows.pop("jobs", None)
        best: dict[str, tuple[float, str]] = {}
        for key, _, _, higher in COLUMNS:
            peers = [(f[key], library) for library, f in rows.items() if key in f]
            if peers:
                best[key] = (max if higher else min)(peers)

        best_of = {key: value for key, (value, _) in best.items()}
        names = {key: name for key, (_, name) in best.items()}
        if ours is not None:
            if best:
                out.append(_ratio_line(backend, "jobs ÷ best peer", ours, best_of, names))
            if raw:
                out.append(_ratio_line(backend, "jobs ÷ raw loop", ours, raw, {}))
            if acked:
                out.append(_ratio_line(backend, "jobs ÷ raw loop, acknowledged", ours, acked, {}))
        elif best and raw:
            out.append(_ratio_line(backend, "best peer ÷ raw loop", best_of, raw, names))
    for entry, _, figures in results:
        for key, error in figures.get("errors", {}).items():
            out.append(f"\n{entry.backend} / {entry.library}, {key}: {error}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", metavar="BACKEND[/LIBRARY]", help="default: all")
    parser.add_argument("--drain-jobs", type=int, default=10_000)
    parser.add_argument("--enqueue-jobs", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--bound", type=float, default=30.0, help="seconds per enqueue (a drain: 3x)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    chosen = [
        e
        for e in ENTRIES
        if not args.only or any(o in (e.backend, f"{e.backend}/{e.library}") for o in args.only)
    ]
    print(f"Machine: {machine()}", file=sys.stderr, flush=True)
    results: list[tuple[Entry, str, dict[str, Any]]] = []
    scratch = Path(tempfile.mkdtemp(prefix="jobs-bench-peers-"))
    for entry in chosen:
        ver = version(entry)
        print(f"running {entry.backend} / {entry.library} ({ver}) ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            figures = measure(entry, args, scratch)
        except Exception as exc:  # a row saying why, not a silent gap
            figures = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {time.monotonic() - started:.0f}s: {figures}", file=sys.stderr, flush=True)
        results.append((entry, ver, figures))
    if args.json:
        payload = [{"backend": e.backend, "library": e.library, "version": v, **f} for e, v, f in results]
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": payload}, indent=2))
    print(f"Machine: {machine()}\n")
    print(tables(results, args.drain_jobs))
    print(f"\n(worker logs in {scratch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
