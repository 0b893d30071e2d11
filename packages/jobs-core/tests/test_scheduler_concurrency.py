"""Several schedulers against one store: each tick is enqueued once.

Three scheduler threads, each with its own driver instance on one shared
memory store, run an every-second schedule for five seconds. Every enqueue
they make is recorded before it reaches the driver, so a tick fired twice is
seen even where the driver's unique keys would drop the copy.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from jobs_core import job
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.message import Message
from jobs_core.scheduler import TICK_HEADER, Enqueue, Scheduler

SCHEDULERS = 3
SECONDS = 5


@job(name="tests.scheduler.heartbeat", queue="beats")
def heartbeat(payload: object) -> None:
    return None


def test_three_scheduler_threads_enqueue_each_tick_once() -> None:
    store = f"memory://threads-{uuid.uuid4().hex[:10]}"
    drivers = [MemoryDriver(store) for _ in range(SCHEDULERS)]
    sent: list[tuple[int, float]] = []
    lock = threading.Lock()

    def enqueue_for(index: int, driver: MemoryDriver) -> Enqueue:
        def enqueue(messages: list[Message]) -> list[str | None]:
            with lock:
                sent.extend((index, float(m.headers[TICK_HEADER])) for m in messages)
            return driver.enqueue(messages)

        return enqueue

    schedulers = [Scheduler(d, enqueue_for(i, d)) for i, d in enumerate(drivers)]
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop, 0.25)) for s in schedulers]
    started = time.time()
    schedulers[0].schedule_every(heartbeat, 1, coalesce=False)
    for thread in threads:
        thread.start()
    time.sleep(started + SECONDS + 0.5 - time.time())
    stop.set()
    for thread in threads:
        thread.join(10)
    try:
        ticks = Counter(tick for _, tick in sent)
        assert [t for t, n in ticks.items() if n > 1] == [], "a tick was enqueued more than once"
        assert SECONDS - 1 <= len(ticks) <= SECONDS + 1, f"{len(ticks)} ticks in {SECONDS}s"
        stored = drivers[0].stats("beats")
        assert stored.pending == len(ticks)
    finally:
        for driver in drivers:
            driver.close()
