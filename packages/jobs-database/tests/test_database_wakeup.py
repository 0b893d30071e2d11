"""Waking idle workers on MySQL / MariaDB without waiting for the poll interval.

A worker waits with a poll interval of 60 s here, so a job that starts within
a second was woken: by a dispatch in its own process (the shared waker), or
from another process (its waiting statement interrupted by the dispatch).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobs_core import Message, job
from jobs_core.app import JobsApp
from jobs_database import DatabaseDriver

pytestmark = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)

#: Far longer than any wake-up: a job started sooner was not found by polling.
LONG_POLL = 60
#: How soon a woken worker must start a job (generous: the machine may be busy).
PROMPT = 1.0


@job(name="tests.database.wakeup.stamp")
def stamp(payload: Any) -> None:
    """Stands for the job run by the worker process (this process only dispatches it)."""


WORKER = """
import os, sys, time
from jobs_core import job
from jobs_core.app import JobsApp

url, out = sys.argv[1], sys.argv[2]

@job(name="tests.database.wakeup.stamp")
def stamp(payload):
    with open(out, "a") as f:
        f.write(f"{payload['n']} {time.time()}\\n")

app = JobsApp(url)
app.register(stamp)
worker = app.worker("wake", poll_interval=float(sys.argv[3]))
print("ready", flush=True)
worker.run()
app.close()
"""


@pytest.fixture
def worker_process(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A ``Worker`` in another process on queue ``wake``, polling every 60 s; yields URL and output file."""
    out = tmp_path / "started.txt"
    out.write_text("")
    url = f"{db_url}&poll_interval={LONG_POLL}"
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(out), str(LONG_POLL)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield url, out
    finally:
        proc.kill()  # a graceful stop would wait for its 60 s reserve to end
        proc.wait(timeout=60)


def _started(out: Path, n: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            number, at = line.split()
            if int(number) == n:
                return float(at)
        time.sleep(0.005)
    return None


def test_a_worker_in_another_process_starts_each_dispatched_job_at_once(
    worker_process: tuple[str, Path],
) -> None:
    url, out = worker_process
    app = JobsApp(url)
    app.register(stamp)
    try:
        # The first job may reach the worker before it waits; it starts in any case.
        app.dispatch(stamp, {"n": 0}, queue="wake")
        assert _started(out, 0, 30) is not None
        delays = []
        for n in range(1, 6):
            time.sleep(0.3)  # the worker is waiting again
            dispatched = time.time()
            app.dispatch(stamp, {"n": n}, queue="wake")
            started = _started(out, n, 30)
            assert started is not None, f"job {n} never started"
            delays.append(started - dispatched)
    finally:
        app.close()
    # Five jobs over 1.5 s, each started within a second: none waited for a poll.
    assert max(delays) < PROMPT, f"start delays {delays}"


@pytest.mark.parametrize("notify", [True, False])
def test_a_dispatch_in_the_same_process_wakes_a_waiting_reserve(
    make_driver: Callable[..., DatabaseDriver], notify: bool
) -> None:
    # notify=false: no cross-process wake-up at all; the process's own dispatch still wakes it.
    waiter = make_driver(poll_interval=LONG_POLL, notify=notify)
    producer = make_driver(notify=notify)
    waiter.reserve(["q"])  # tables ready
    got: list[Any] = []
    woken = threading.Event()

    def wait() -> None:
        got.extend(waiter.reserve(["q"], timeout=30))
        woken.set()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)  # the reserve is waiting
    dispatched = time.monotonic()
    producer.enqueue([Message(name="a", queue="q")])
    assert woken.wait(30)
    elapsed = time.monotonic() - dispatched
    thread.join()
    assert [d.message.name for d in got] == ["a"]
    assert elapsed < PROMPT, f"woken after {elapsed:.2f}s"


def test_a_delayed_job_does_not_start_before_it_is_due(
    worker_process: tuple[str, Path],
) -> None:
    url, out = worker_process
    app = JobsApp(url)
    app.register(stamp)
    try:
        app.dispatch(stamp, {"n": 0}, queue="wake")
        assert _started(out, 0, 30) is not None
        time.sleep(0.3)
        dispatched = time.time()
        app.dispatch(stamp.delay(1.5), {"n": 1}, queue="wake")
        started = _started(out, 1, 30)
    finally:
        app.close()
    assert started is not None
    assert 1.5 <= started - dispatched < 10  # when due, not at the next poll
