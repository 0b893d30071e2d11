"""Crash safety of the database driver with real ``jobs worker`` processes.

Two workers drain 2,000 jobs that each record their id; one worker is killed
with SIGKILL midway. Every id must be recorded, and the ids run twice must be
no more than the killed worker could hold: at concurrency 1 its running job
plus prefetch; at concurrency 4 (5 ms jobs, default prefetch) its running jobs
plus those finished within the acknowledgement interval (50 ms).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs_core.testing.crash import (
    DEFAULT_ACK_INTERVAL,
    SCHEDULING_SLACK,
    ack_window_bound,
    kill_one_of_two,
)

TOTAL = 2000
PREFETCH = 20


@pytest.fixture
def url(database_url: str) -> str:
    return database_url


def test_two_workers_lose_nothing_when_one_is_killed(url: str, tmp_path: Path) -> None:
    outcome = kill_one_of_two(url, tmp_path, total=TOTAL, worker_args=["--prefetch", str(PREFETCH)])
    outcome.assert_lost_nothing()
    # At concurrency 1 the killed worker holds one reserved batch of at most
    # PREFETCH jobs (finished ones are acknowledged before the next is reserved).
    print(f"{outcome.duplicates} duplicates (bound {PREFETCH})")
    outcome.assert_reruns_at_most(PREFETCH)


def test_a_killed_busy_worker_at_concurrency_4_reruns_only_its_running_jobs_and_50ms_of_work(
    url: str, tmp_path: Path
) -> None:
    outcome = kill_one_of_two(
        url, tmp_path, total=TOTAL, worker_args=["--concurrency", "4"], job_seconds=0.005
    )
    outcome.assert_lost_nothing()
    # Its running jobs and those finished within the acknowledgement interval
    # (plus one tick for an acknowledgement in flight, and a busy machine's
    # scheduling delay); prefetched jobs it never started do not run twice.
    slack = 0.025 + SCHEDULING_SLACK
    outcome.assert_reruns_finished_within(DEFAULT_ACK_INTERVAL + slack)
    bound = ack_window_bound(concurrency=4, job_seconds=0.005, slack=slack)
    print(f"{outcome.duplicates} duplicates (bound {bound})")
    outcome.assert_reruns_at_most(bound)
