"""Benchmark harness: ``nox -s bench`` or ``python benchmarks/run.py``.

Each driver family has a module in this directory exposing
``run(backend, options) -> dict[str, float]``; :data:`BACKENDS` maps a backend
name to ``(module, URL)``. Pick backends with ``--backend`` (repeatable) and
the size with ``--jobs``. Figures are printed as a Markdown table, ready for
docs/performance.md.

    python benchmarks/run.py --backend sqlite --backend postgresql --jobs 20000
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: backend name -> (module in benchmarks/, URL; override with BENCH_<NAME>_URL)
BACKENDS: dict[str, tuple[str, str]] = {
    "sqlite": ("database", "sqlite:///{tmp}/jobs-bench.db"),
    "postgresql": ("database", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": ("database", "mysql+pymysql://root@127.0.0.1:3306/test"),
    # "{tansu}" starts a Tansu test broker for the run; BENCH_KAFKA_URL names a cluster.
    "kafka": ("kafka", "kafka://{tansu}"),
    "redis": ("redis_bench", "redis://127.0.0.1:6379/0"),
}

COLUMNS = [
    ("bulk_enqueue_per_s", "bulk enqueue (jobs/s)", "{:,.0f}"),
    ("bulk_enqueue_2t_per_s", "bulk enqueue, 2 threads (jobs/s)", "{:,.0f}"),
    ("drain_per_s", "drain, 1 worker process (jobs/s)", "{:,.0f}"),
    ("latency_p50_ms", "idle latency p50 (ms)", "{:.2f}"),
    ("latency_p99_ms", "idle latency p99 (ms)", "{:.2f}"),
    ("cpu_us_per_job", "worker CPU per job (µs)", "{:.0f}"),
    ("drain_c4_per_s", "drain, concurrency 4 (jobs/s)", "{:,.0f}"),
    ("drain_c4_ratio", "concurrency 4 / 1", "{:.0%}"),
    ("cpu_c4_us_per_job", "worker CPU per job, concurrency 4 (µs)", "{:.0f}"),
    ("drain_c8_per_s", "drain, concurrency 8 (jobs/s)", "{:,.0f}"),
    ("drain_c8_ratio", "concurrency 8 / 1", "{:.0%}"),
    ("drain_c8_mif8_per_s", "drain, concurrency 8, max_in_flight=8 (jobs/s)", "{:,.0f}"),
    ("io_async_per_s", "async 10 ms jobs, concurrency 200 (jobs/s)", "{:,.0f}"),
    ("io_sync_per_s", "sync 10 ms jobs, concurrency 32 (jobs/s)", "{:,.0f}"),
]


def machine() -> str:
    """One line describing the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}; "
        f"calibration: sum(range(10_000)) takes {calibration_us():.0f} µs"
    )


def calibration_us() -> float:
    """How fast this interpreter runs plain Python here (best of 5, µs per loop).

    Shared and virtualised machines vary from day to day; figures from two
    runs compare only next to this number.
    """
    return min(timeit.repeat("sum(range(10_000))", number=200, repeat=5)) / 200 * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", action="append", choices=sorted(BACKENDS), help="default: all")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain run (default 20000)")
    parser.add_argument("--enqueue-jobs", type=int, default=100_000, help="jobs for the bulk enqueue run")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument(
        "--io-jobs", type=int, default=20_000, help="async I/O-bound jobs (sync: a quarter); 0 skips both"
    )
    parser.add_argument(
        "--drain-only", action="store_true", help="only the no-op drains (concurrency 1, 4, 8)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for name in args.backend or list(BACKENDS):
        module_name, url = BACKENDS[name]
        url = os.environ.get(f"BENCH_{name.upper()}_URL", url)
        module = importlib.import_module(module_name)
        options = {
            "url": url,
            "jobs": args.jobs,
            "enqueue_jobs": args.enqueue_jobs,
            "latency_samples": args.latency_samples,
            "io_jobs": 0 if args.drain_only else args.io_jobs,
            "drain_only": args.drain_only,
        }
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            results[name] = module.run(name, options)
        except Exception as exc:  # one backend's failure must not hide the others' figures
            failures[name] = f"{type(exc).__name__}: {exc}"
            print(f"  {name} FAILED: {failures[name]}", file=sys.stderr, flush=True)
            continue
        print(f"  done in {time.monotonic() - started:.1f}s: {results[name]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"machine": machine(), "results": results, "failures": failures}, indent=2))
        return 1 if failures else 0
    print(f"Machine: {machine()}\n")
    print("| backend | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, figures in results.items():
        cells = [fmt.format(figures[key]) if key in figures else "n/a" for key, _, fmt in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, error in failures.items():
        print(f"\n{name}: failed: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
