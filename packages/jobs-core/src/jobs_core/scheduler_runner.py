"""Running a scheduler: in a thread beside a worker, or in the foreground with signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from jobs_core.quiet_threads import block_stop_signals

if TYPE_CHECKING:
    from jobs_core.scheduler import Scheduler

log = logging.getLogger("jobs_core.scheduler")


class SchedulerThread(threading.Thread):
    """Runs a scheduler in a daemon thread (``jobs worker --with-scheduler``).

    ``start()`` it, and ``stop()`` it at shutdown.
    """

    def __init__(self, scheduler: Scheduler, poll_interval: float = 1.0) -> None:
        super().__init__(name="jobs-scheduler", daemon=True)
        self.scheduler = scheduler
        self.poll_interval = poll_interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        """The thread's body: :meth:`Scheduler.run` until stopped (stop signals left to the main thread)."""
        block_stop_signals()
        self.scheduler.run(self.stop_event, self.poll_interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the loop to stop and wait up to ``timeout`` seconds for it."""
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)


def run_scheduler(
    scheduler: Scheduler,
    *,
    stop_event: threading.Event | None = None,
    poll_interval: float = 1.0,
    handle_signals: bool = False,
    on_start: Callable[[], object] | None = None,
) -> None:
    """Run ``scheduler`` in this thread until ``stop_event`` is set.

    With ``handle_signals`` (the ``jobs scheduler`` command), SIGTERM and
    SIGINT stop the loop after the current tick and the previous handlers are
    restored on return; this needs the main thread. ``on_start`` is called
    once the handlers are in place, before the first tick (the command prints
    its start line there).
    """
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if handle_signals:

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received signal %d; stopping the scheduler", signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        if on_start is not None:
            on_start()  # once the signals are handled: a stop from now on is graceful
        scheduler.run(stop, poll_interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
