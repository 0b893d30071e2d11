"""Crash safety with real ``jobs worker`` processes on Redis.

Two workers (concurrency 4, 5 ms jobs) drain 5,000 jobs that each record
their id; one is killed with SIGKILL midway. Every id must be recorded, and
the ids run twice must be no more than the killed worker's running jobs plus
those it finished within the acknowledgement interval (50 ms, plus one tick
for an acknowledgement in flight): its leases run out and the survivor takes
them over.
"""

from __future__ import annotations

from pathlib import Path

from jobs_core.testing.crash import (
    DEFAULT_ACK_INTERVAL,
    SCHEDULING_SLACK,
    ack_window_bound,
    kill_one_of_two,
)
from jobs_redis.testing import delete_prefix

TOTAL = 5000
CONCURRENCY = 4
JOB_SECONDS = 0.005


def test_a_killed_worker_loses_nothing_and_reruns_only_its_running_jobs(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    url = f"{redis_url}?prefix={prefix}"
    try:
        outcome = kill_one_of_two(
            url,
            tmp_path,
            total=TOTAL,
            worker_args=["--concurrency", str(CONCURRENCY)],
            job_seconds=JOB_SECONDS,
        )
    finally:
        delete_prefix(url)
    outcome.assert_lost_nothing()
    # Its running jobs and those it finished within the acknowledgement interval (plus a
    # tick for an acknowledgement in flight, and a busy machine's scheduling delay).
    slack = 0.025 + SCHEDULING_SLACK
    outcome.assert_reruns_finished_within(DEFAULT_ACK_INTERVAL + slack)
    bound = ack_window_bound(concurrency=CONCURRENCY, job_seconds=JOB_SECONDS, slack=slack)
    print(f"{outcome.duplicates} duplicates (bound {bound})")
    outcome.assert_reruns_at_most(bound)
