"""Drain throughput with results kept against off: ``python benchmarks/results.py``.

Each round queues ``--jobs`` jobs that return a small JSON object and drains
them with one worker in this process, once on an app whose driver keeps no
results (``results_ttl=0``: plain acks) and once on one that keeps them (the
default, a day: each ack also stores the job's return value, for
``Jobs.status`` and ``Jobs.result``). The two drains of a round run back to
back, so their ratio drifts less with the machine's load than either rate;
the table gives the medians of the rates, of the rounds' ratios, and of this
process's CPU time per job.

    python benchmarks/results.py --backend sqlite --backend postgresql --jobs 5000 --rounds 5

PostgreSQL and MariaDB come from ``BENCH_POSTGRESQL_URL`` and
``BENCH_MARIADB_URL`` (defaults: the local test servers, database ``test``);
each setup uses its own table prefix, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp

SERVERS = {
    "postgresql": os.environ.get("BENCH_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "redis": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


@job(name="bench.results_echo")
def echo(payload: Any) -> Any:
    """Returns a small JSON object, as a job whose result someone reads."""
    return {"n": payload, "ok": True}


def drain(app: JobsApp, jobs: int, concurrency: int) -> tuple[float, float]:
    """Queue ``jobs`` jobs, drain them; jobs/s of the drain and this process's CPU µs per job."""
    for start in range(0, jobs, 1000):
        app.dispatch_many(echo, list(range(start, min(jobs, start + 1000))))
    started, cpu = time.perf_counter(), time.process_time()
    worker = app.worker(
        "default", stop_when_empty=True, install_signal_handlers=False, concurrency=concurrency
    )
    handled = worker.run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert handled == jobs, f"drained {handled} of {jobs} jobs"
    return jobs / elapsed, cpu / jobs * 1e6


def _url(backend: str, tmp: str, prefix: str, ttl: str) -> str:
    if backend == "memory":
        return f"memory://?results_ttl={ttl}"
    base = f"sqlite:///{Path(tmp) / (prefix + 'bench.db')}" if backend == "sqlite" else SERVERS[backend]
    option = "prefix" if backend == "redis" else "table_prefix"
    return f"{base}{'&' if '?' in base else '?'}{option}={prefix}&results_ttl={ttl}"


def run(backend: str, jobs: int, rounds: int, concurrency: int) -> dict[str, float]:
    """Medians of the drain with results off and kept: jobs/s, the paired ratio, CPU µs per job."""
    tag = uuid.uuid4().hex[:6]
    setups = {"off": ("0", f"bro{tag}_"), "kept": ("86400", f"brk{tag}_")}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as tmp:
        apps = {
            name: JobsApp(_url(backend, tmp, prefix, ttl), load_plugins=False)
            for name, (ttl, prefix) in setups.items()
        }
        try:
            for app in apps.values():
                app.register(echo)
                drain(app, 200, concurrency)  # warm up: schema, imports
            for _ in range(rounds):
                for name, app in apps.items():
                    runs[name].append(drain(app, jobs, concurrency))
            kept = apps["kept"]
            status = kept.status(kept.dispatch(echo, -1) or "")
            assert status.state == "queued", status
        finally:
            for app in apps.values():
                driver = app.driver
                tables = getattr(driver, "tables", None)
                if backend in SERVERS and tables is not None:
                    tables.metadata.drop_all(driver.engine)  # type: ignore[attr-defined]
                url = driver.url
                app.close()
                if backend == "redis" and url:
                    from jobs_redis.testing import delete_prefix

                    delete_prefix(url)
    off, kept_runs = runs["off"], runs["kept"]
    return {
        "off": statistics.median(rate for rate, _ in off),
        "kept": statistics.median(rate for rate, _ in kept_runs),
        "ratio": statistics.median(k[0] / o[0] for o, k in zip(off, kept_runs, strict=True)),
        "cpu_off": statistics.median(cpu for _, cpu in off),
        "cpu_kept": statistics.median(cpu for _, cpu in kept_runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = ["memory", "sqlite", "postgresql", "mariadb", "redis"]
    parser.add_argument("--backend", action="append", choices=choices)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, action="append")
    args = parser.parse_args(argv)
    backends = args.backend or ["sqlite"]
    levels = args.concurrency or [1]
    print(f"{args.jobs} jobs returning a small object, median of {args.rounds} rounds\n")
    print(
        "| backend | concurrency | results off (jobs/s) | results kept (jobs/s) | kept vs off (paired) "
        "| worker CPU per job, off / kept (µs) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for backend in backends:
        for concurrency in levels:
            m = run(backend, args.jobs, args.rounds, concurrency)
            print(
                f"| {backend} | {concurrency} | {m['off']:,.0f} | {m['kept']:,.0f} | {m['ratio'] - 1:+.1%} "
                f"| {m['cpu_off']:.0f} / {m['cpu_kept']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
