"""A worker processing example jobs on a SQLite file, showing its progress.

Run it with::

    python -m jobs_database.demo                 # jobs-demo.db in the current directory
    python -m jobs_database.demo --jobs 2000 --db /tmp/demo.db

It queues example jobs (thumbnails of different priorities, a delayed
report, and one job that always fails), then starts a real ``jobs worker``
process on the file, which prints a progress line every half second, and
finally shows the queue statistics and the failed job. Nothing but
jobs-core and jobs-database needs to be installed; SQLite needs no server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp

QUEUE = "demo"


@job(name="demo.thumbnail", queue=QUEUE)
def thumbnail(payload: Any) -> str:
    """Pretend to render a thumbnail (a few milliseconds of work)."""
    time.sleep(0.002)
    return f"{payload['image']} -> {payload['size']}px"


@job(name="demo.report", queue=QUEUE)
def report(payload: Any) -> str:
    """A job dispatched with a delay."""
    return f"report for {payload['day']}"


@job(name="demo.broken", queue=QUEUE, max_retries=1, retry_delay=0.2, jitter=False)
def broken(payload: Any) -> None:
    """Always fails: after one retry it lands in the failed store."""
    raise RuntimeError(f"cannot reach {payload['url']}")


def main(argv: list[str] | None = None) -> int:
    """Queue the example jobs, run a worker process on them, print the outcome."""
    parser = argparse.ArgumentParser(prog="python -m jobs_database.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="jobs-demo.db", help="SQLite file (default: jobs-demo.db)")
    parser.add_argument("--jobs", type=int, default=1000, help="thumbnail jobs to queue (default: 1000)")
    args = parser.parse_args(argv)
    path = Path(args.db).resolve()
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    url = f"sqlite:///{path}"

    app = JobsApp(url)
    try:
        app.dispatch_many(
            thumbnail, [{"image": f"photo-{i}.jpg", "size": 128} for i in range(args.jobs)], queue=QUEUE
        )
        app.dispatch(thumbnail.priority(10), {"image": "cover.jpg", "size": 512})
        app.dispatch_later(1.0, report, {"day": time.strftime("%Y-%m-%d")})
        app.dispatch(broken, {"url": "https://unreachable.example"})
        print(f"queued {args.jobs + 3} jobs in {path}: {app.stats(QUEUE)}", flush=True)
    finally:
        app.close()

    # thumbnails + cover + report + the broken job's two attempts
    handled = args.jobs + 1 + 1 + 2
    command = [
        sys.executable,
        "-m",
        "jobs_core",
        "worker",
        "--url",
        url,
        "--queue",
        QUEUE,
        "--import",
        "jobs_database.demo",
        "--max-jobs",
        str(handled),
        "--progress",
        "0.5",
    ]
    print("starting: jobsctl " + " ".join(command[3:]), flush=True)
    status = subprocess.call(command)
    if status != 0:
        return status

    app = JobsApp(url)
    try:
        print(f"done: {app.stats(QUEUE)}")
        for failed in app.failed_jobs():
            reason = failed.error.splitlines()[0]
            print(f"failed job {failed.id} ({failed.name}, {failed.attempts} attempts): {reason}")
        # jobsctl, not jobs: a shell's own `jobs` built-in would answer instead.
        print(f"inspect it with: jobsctl stats --url {url}   |   jobsctl failed --url {url}")
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
