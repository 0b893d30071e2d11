"""Redis's own time per job in the Redis driver's scripts, from ``INFO commandstats``.

Queues ``--jobs`` no-op jobs (``dispatch_many``) under a fresh prefix, then in
this process reserves them all in batches of ``--limit`` and acknowledges each
batch with its result kept (``ack_results``, what a worker does by default),
and finally enqueues and reserves ``--single`` jobs one at a time (the idle
path). For each phase it prints the server's time in ``EVALSHA`` per job
(``usec`` of the command, which includes every command the script runs), the
commands the scripts ran per job and their own time, and the client's wall
time per job. ``INFO commandstats`` counts every client of the server: run it
on a Redis nobody else uses for exact figures.

    python benchmarks/redis_costs.py --url 'redis://127.0.0.1:6379/5?prefix=costs'
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from jobs_core import job
from jobs_core.app import JobsApp
from jobs_redis.driver import RedisDriver
from jobs_redis.testing import delete_prefix


@job(name="bench.costs")
def noop(payload: Any) -> None:
    """Nothing: the cost measured is the driver's."""


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    return {k: (v["calls"], v["usec"]) for k, v in client.info("commandstats").items()}


def report(label: str, jobs: int, seconds: float, before: dict[str, Any], after: dict[str, Any]) -> None:
    rows = []
    for key, (total_calls, total_usec) in sorted(after.items()):
        calls = total_calls - before.get(key, (0, 0))[0]
        usec = total_usec - before.get(key, (0, 0))[1]
        if calls >= jobs / 1000 and key not in {"cmdstat_info", "cmdstat_select", "cmdstat_hello"}:
            rows.append((key.removeprefix("cmdstat_"), calls, usec))
    scripts = next((usec for name, _, usec in rows if name == "evalsha"), 0)
    print(
        f"{label}: EVALSHA {scripts / jobs:.1f} us of Redis per job, client {seconds / jobs * 1e6:.1f} us/job"
    )
    for name, calls, usec in rows:
        if name != "evalsha":
            print(f"    {name:<18} {calls / jobs:6.2f} calls/job {usec / jobs:6.2f} us/job")


def phase(client: redis.Redis, label: str, jobs: int, body: Callable[[], None]) -> None:
    before = commandstats(client)
    started = time.perf_counter()
    body()
    seconds = time.perf_counter() - started
    report(label, jobs, seconds, before, commandstats(client))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--single", type=int, default=2_000)
    args = parser.parse_args(argv)
    url = args.url
    if "prefix=" not in url:
        url += ("&" if "?" in url else "?") + f"prefix=costs_{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(url.split("?", 1)[0])
    app = JobsApp(url)
    app.register(noop)
    driver = RedisDriver(url)
    try:
        for start in range(0, args.jobs, 5000):
            app.dispatch_many(noop, [{"n": 0} for _ in range(min(5000, args.jobs - start))], queue="costs")
        batches = []

        def reserve() -> None:
            while found := driver.reserve(["costs"], args.limit, 30.0, 0):
                batches.append(found)

        def ack() -> None:
            for found in batches:
                driver.ack_results(found, ["null"] * len(found))

        def single() -> None:
            for _ in range(args.single):
                app.dispatch(noop, {"n": 0}, queue="single")
                driver.ack_results(found := driver.reserve(["single"], 1, 30.0, 0), ["null"] * len(found))

        phase(client, f"reserve, batches of {args.limit}", args.jobs, reserve)
        phase(client, f"ack_results, batches of {args.limit}", args.jobs, ack)
        phase(client, "one job at a time: enqueue, reserve, ack_results", args.single, single)
    finally:
        driver.close()
        app.close()
        delete_prefix(url)
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
