"""The cost of flow control on drain throughput, and the pace of a binding rate limit.

``drain`` (the default): each round queues ``--jobs`` no-op jobs and drains
them with one worker in this process, in turn: plain; with a rate limit that
does not bind (10,000,000 per second on one key); with a concurrency limit
that does not bind (1,000,000 at once); with a tenant (on a driver with
``TENANT_FAIRNESS`` the queue is then claimed in tenants' turns). The rounds
alternate so that all see the same machine; the medians are printed as a
Markdown table with each one's cost against the plain drain.

``pace``: four worker threads, each with its own driver (connections),
drain ``--jobs`` jobs under a rate limit of ``--rate`` per second on one
key; prints the busiest one-second window of starts and the pace at which
windows open (the goal: within 5 % of the limit).

    python benchmarks/flow_control.py --url sqlite:////tmp/flow.db --jobs 5000 --rounds 5
    python benchmarks/flow_control.py --url postgresql+psycopg://postgres@127.0.0.1/bench --concurrency 4
    python benchmarks/flow_control.py --url sqlite:////tmp/flow.db --variants plain,tenant
    python benchmarks/flow_control.py --mode pace --url postgresql+psycopg://... --rate 50 --jobs 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp
from jobs_core.job import Job

STARTS: list[float] = []


@job(name="bench.flow_noop", queue="bench")
def noop(payload: Any) -> None:
    """Does nothing but note when it started."""
    STARTS.append(time.time())


VARIANTS: dict[str, Any] = {
    "plain": noop.new,
    "rate_limit": lambda: noop.rate_limit(10_000_000, per=1, key="bench"),
    "concurrency_limit": lambda: noop.concurrency_limit(1_000_000, key="bench"),
    "tenant": lambda: noop.tenant("tenant-a"),
}


def _url(base: str) -> str:
    """``base`` with a table prefix of this run, unless it names its own prefix (a Redis URL must)."""
    if base.startswith("sqlite") or base.startswith("memory") or "prefix=" in base:
        return base
    glue = "&" if "?" in base else "?"
    return f"{base}{glue}table_prefix=b{uuid.uuid4().hex[:8]}_"


def drain_once(url: str, variant: str, jobs: int, concurrency: int) -> tuple[float, float]:
    """Queue ``jobs`` jobs of ``variant``, drain them; jobs per second of the drain, and
    the CPU time this process spent per job (microseconds).
    """
    with JobsApp(url, load_plugins=False) as app:
        app.register(noop)
        app.driver.purge("bench")
        template: Job = VARIANTS[variant]()
        for start in range(0, jobs, 5000):
            app.dispatch_many(template, range(start, min(jobs, start + 5000)))
        worker = app.worker(
            ["bench"], concurrency=concurrency, stop_when_empty=True, install_signal_handlers=False
        )
        began, cpu = time.perf_counter(), time.process_time()
        handled = worker.run()
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        assert handled == jobs, f"{variant}: drained {handled} of {jobs}"
        return jobs / elapsed, cpu / jobs * 1e6


def drain(args: argparse.Namespace) -> None:
    url = _url(args.url)
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or "plain" not in names:
        raise SystemExit(
            f"--variants: plain and any of {', '.join(VARIANTS)} (unknown: {', '.join(unknown)})"
        )
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    drain_once(url, "plain", min(args.jobs, 500), args.concurrency)  # warm up: schema, imports
    for _ in range(args.rounds):
        for name in names:
            rate, cpu = drain_once(url, name, args.jobs, args.concurrency)
            rates[name].append(rate)
            cpus[name].append(cpu)
    plain = statistics.median(rates["plain"])
    plain_cpu = statistics.median(cpus["plain"])
    backend = args.url.split(":")[0]
    # On a shared machine the wall-clock rate swings with the other work; the CPU time this
    # process spends per job does much less (all of the work for SQLite, the client's for a server).
    print(
        f"| {backend}, concurrency {args.concurrency} | jobs/s (median of {args.rounds}) | cost "
        "| CPU µs/job (this process) | cost |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, values in rates.items():
        median, cpu = statistics.median(values), statistics.median(cpus[name])
        print(
            f"| {name} | {median:,.0f} | {100 * (1 - median / plain):+.1f} % "
            f"| {cpu:,.1f} | {100 * (1 - plain_cpu / cpu):+.1f} % |"
        )


def pace(args: argparse.Namespace) -> None:
    url = _url(args.url)
    with JobsApp(url, load_plugins=False) as app:
        app.register(noop)
        app.driver.purge("bench")
        workers = []
        for _ in range(4):
            own = JobsApp(url, load_plugins=False)
            own.register(noop)
            workers.append(own.worker(["bench"], concurrency=4, install_signal_handlers=False))
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        STARTS.clear()
        app.dispatch_many(
            noop.rate_limit(args.rate, per=1, key=f"pace-{uuid.uuid4().hex[:6]}"), range(args.jobs)
        )
        deadline = time.monotonic() + args.jobs / args.rate * 3 + 30
        while len(STARTS) < args.jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(60)
    times = sorted(STARTS)
    busiest = max(sum(1 for t in times[i:] if t < at + 1.0) for i, at in enumerate(times))
    opened = (len(times) - args.rate) / (times[len(times) - args.rate] - times[0])
    print(f"{len(times)} jobs under {args.rate}/s: busiest second {busiest}, windows open at {opened:.1f}/s")
    print(f"({100 * (1 - opened / args.rate):.1f} % under the limit, over {times[-1] - times[0]:.1f} s)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["drain", "pace"], default="drain")
    parser.add_argument("--url", default="sqlite:////tmp/jobs-flow-bench.db")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument(
        "--variants", default="", help="drain: comma-separated, plain among them (default: all)"
    )
    args = parser.parse_args(argv)
    if args.mode == "drain":
        drain(args)
    else:
        pace(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
