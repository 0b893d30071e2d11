"""Three scheduler processes against one SQLite store: each tick is enqueued once.

The memory driver lives in one process, so this test needs a store that
processes share: the SQLite backend of ``jobs-database``, reached through the
``jobs.drivers`` entry point by URL (jobs-core never imports a driver). Each
process runs :func:`~jobs_core.scheduler_runner.run_scheduler` on an every-second
schedule for five seconds and reports every tick it enqueued.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from jobs_core.config import JobsConfig
from jobs_core.driver import Capability
from jobs_core.plugins import DriverRegistry
from jobs_core.scheduler import Scheduler

pytest.importorskip("jobs_database", reason="the multi-process test needs the jobs-database driver (SQLite)")

PROCESSES = 3
SECONDS = 5

CHILD = r"""
import json, sys
from jobs_core.config import JobsConfig
from jobs_core.plugins import DriverRegistry
from jobs_core.scheduler import TICK_HEADER, Scheduler
from jobs_core.scheduler_runner import run_scheduler

driver = JobsConfig.parse(sys.argv[1]).create_driver(DriverRegistry())
sent = []

def enqueue(messages):
    sent.extend(float(m.headers[TICK_HEADER]) for m in messages)
    return driver.enqueue(messages)

scheduler = Scheduler(driver, enqueue)
print("ready", flush=True)
run_scheduler(scheduler, poll_interval=0.25, handle_signals=True)
driver.close()
print(json.dumps(sent), flush=True)
"""


def test_three_scheduler_processes_enqueue_each_tick_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    driver = JobsConfig.parse(url).create_driver(DriverRegistry())
    assert driver.supports(Capability.SCHEDULES)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr
        # Every scheduler is running: declare, and let them compete for five seconds.
        started = time.time()
        Scheduler(driver).schedule_every("tests.scheduler.heartbeat", 1, queue="beats", coalesce=False)
        time.sleep(started + SECONDS + 0.5 - time.time())
        for child in children:
            child.send_signal(signal.SIGTERM)
        reports = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        ticks = Counter(tick for report in reports for tick in report)
        assert [t for t, n in ticks.items() if n > 1] == [], "a tick was enqueued by two processes"
        assert SECONDS - 1 <= len(ticks) <= SECONDS + 1, f"{len(ticks)} ticks in {SECONDS}s: {reports}"
        assert driver.stats("beats").pending == len(ticks)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        driver.close()
