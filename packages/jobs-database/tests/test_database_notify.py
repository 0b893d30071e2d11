"""PostgreSQL: a dispatch from another process wakes a waiting reserve through ``NOTIFY``.

Drivers in one process share a waker, so only a producer in another process
shows that the ``NOTIFY`` is sent and listened for. The waiter polls every
60 s: a job it gets within seconds was announced.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from jobs_core import Delivery
from jobs_database import DatabaseDriver

PRODUCER = """
import sys
from jobs_core import Message
from jobs_database import DatabaseDriver

driver = DatabaseDriver(sys.argv[1])
driver.enqueue([Message(name="a", queue="q")])
driver.close()
"""


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_dispatch_from_another_process_wakes_a_waiting_reserve_long_before_its_poll(
    make_driver: Callable[..., DatabaseDriver], db_url: str
) -> None:
    waiter = make_driver(poll_interval=60)
    waiter.reserve(["q"])  # the tables exist before the other process writes
    got: list[Delivery] = []
    thread = threading.Thread(target=lambda: got.extend(waiter.reserve(["q"], timeout=30)))
    thread.start()
    time.sleep(1.0)  # the waiter is listening (its reserve waits for LISTEN before it blocks)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", PRODUCER, db_url], check=True, timeout=60)
    thread.join(timeout=60)
    waited = time.monotonic() - started
    assert len(got) == 1
    # Unannounced, the job would be found only when the reserve gives up (30 s).
    assert waited < 15, f"the waiting reserve got the job after {waited:.1f}s: it was not woken"
