"""The worker's housekeeping thread: lease heartbeats and periodic ack flushes.

One thread serves every delivery a worker holds: every ``lease / 3`` seconds
it extends the leases of all of them (prefetched, running, or finished but
not yet acknowledged), so a long job is never handed to another worker; and
several times a second it runs the worker's other periodic duties (flushing
acknowledgements that waited too long, watching the shutdown grace period).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from jobs_core.driver import Driver
from jobs_core.message import Delivery
from jobs_core.quiet_threads import quiet

log = logging.getLogger("jobs_core.worker")

#: How often the periodic duties run, in seconds.
TICK = 0.1


class Heartbeat:
    """Extends leases of ``held()`` deliveries and calls ``on_tick`` every ``tick`` seconds (:data:`TICK`).

    ``lost(delivery)`` is called when a renewal finds the lease already gone
    (the worker decides whether that matters: the job may have just finished).
    """

    def __init__(
        self,
        driver: Driver,
        lease: float,
        held: Callable[[], Sequence[Delivery]],
        lost: Callable[[Delivery], None],
        on_tick: Callable[[], None],
        *,
        tick: float = TICK,
    ) -> None:
        self.driver = driver
        self.lease = lease
        self.interval = max(0.05, lease / 3)
        self._held = held
        self._lost = lost
        self._on_tick = on_tick
        self.tick = max(0.005, tick)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=quiet(self._loop), name="jobs-heartbeat", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._stop.wait(min(self.tick, self.interval)):
            try:
                self._on_tick()
            except Exception:
                log.exception("worker housekeeping failed")
            if time.monotonic() >= next_beat:
                self.beat()
                next_beat = time.monotonic() + self.interval

    def beat(self) -> None:
        """Extend the lease of every held delivery now."""
        for delivery in self._held():
            try:
                kept = self.driver.extend(delivery, self.lease)
            except Exception as exc:
                log.warning("could not extend the lease of job %s: %s", delivery.id, exc)
                continue
            if not kept:
                self._lost(delivery)
