"""Benchmark: a batch of no-op jobs against the same jobs dispatched plainly.

For each round, on fresh tables: ``JobsApp.dispatch_many`` of ``--jobs`` no-op
jobs, then one in-process worker (concurrency 1, default prefetch) drains the
queue; then the same jobs as one batch (``Jobs.batch([...]).then(...)``),
drained the same way (the ``then`` callback included). Prints the dispatch
and drain times of each and the ratio batch / plain of their sums::

    python benchmarks/workflows.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench --jobs 20000
    python benchmarks/workflows.py --url redis://127.0.0.1:6379/0 --jobs 20000

On Redis each round uses a key prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import uuid
from typing import Any

import sqlalchemy as sa
from jobs_core import JobsApp, job
from jobs_core.workflows import Batch, status
from jobs_database.schema import build_tables, drop_all


@job(name="bench.noop", queue="bench")
def noop(payload: Any) -> None:
    return None


def _round(url: str, total: int, as_batch: bool) -> tuple[float, float]:
    prefix = f"wfb_{uuid.uuid4().hex[:6]}_"
    option = "prefix" if url.startswith("redis") else "table_prefix"
    full = url + ("&" if "?" in url else "?") + f"{option}={prefix}"
    app = JobsApp(full, load_plugins=False)
    try:
        app.driver.ping()
        started = time.perf_counter()
        if as_batch:
            batch_id = Batch(app, [(noop, {"n": n}) for n in range(total)]).then(noop, {}).dispatch()
        else:
            app.dispatch_many(noop, [{"n": n} for n in range(total)])
        dispatched = time.perf_counter()
        ran = app.work("bench")
        drained = time.perf_counter()
        expected = total + 1 if as_batch else total
        if ran != expected:
            late = app.work("bench")
            found = status(app, batch_id, "batch") if as_batch else None
            raise AssertionError(f"ran {ran} jobs, expected {expected}; {late} more ran after; {found}")
        if as_batch:
            assert status(app, batch_id, "batch").succeeded == total
        return dispatched - started, drained - dispatched
    finally:
        app.close()
        _drop(url, full, prefix)


def _drop(url: str, full: str, prefix: str) -> None:
    """Remove what one round wrote: its key prefix on Redis, its tables elsewhere."""
    if url.startswith("redis"):
        from jobs_redis.testing import delete_prefix

        delete_prefix(full)
        return
    engine = sa.create_engine(url)
    drop_all(engine, build_tables(prefix))
    engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=("plain", "batch"), help="run one side only (to compare two versions of the code)"
    )
    args = parser.parse_args()
    calibration = min(_calibrate() for _ in range(5))
    print(f"calibration: sum(range(10_000)) {calibration * 1e6:.0f} µs")
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "batch": []}
    sides = (args.only,) if args.only else ("plain", "batch")
    for _ in range(args.rounds):
        for name in sides:
            results[name].append(_round(args.url, args.jobs, name == "batch"))
    for name, rows in results.items():
        if not rows:
            continue
        dispatch = statistics.median(r[0] for r in rows)
        drain = statistics.median(r[1] for r in rows)
        print(f"{name:5}  dispatch {dispatch:6.2f} s  drain {drain:6.2f} s  total {dispatch + drain:6.2f} s")
    if args.only:
        return
    ratios = [sum(b) / sum(p) for p, b in zip(results["plain"], results["batch"], strict=True)]
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    median = statistics.median(ratios)
    print(f"batch / plain: {median:.2f}x median of {args.rounds} rounds ({listed}), {args.jobs} jobs")


def _calibrate() -> float:
    started = time.perf_counter()
    sum(range(10_000))
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
