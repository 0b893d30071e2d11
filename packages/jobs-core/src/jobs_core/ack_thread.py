"""One long-lived helper thread that runs a worker's acknowledgements in the background.

A worker whose driver acknowledges in the background
(:attr:`~jobs_core.driver.Driver.ack_in_background`) hands each finished
batch to this thread and goes on reserving and running the next one. Starting
a thread per batch cost a scheduling round (``Thread.start`` waits until the
new thread runs), several milliseconds on a loaded machine, which at a few
hundred batches per second was most of a fast worker's time; this thread is
started once and woken by a condition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from jobs_core.quiet_threads import quiet

log = logging.getLogger("jobs_core.worker")


class AckThread:
    """Runs ``flush`` on one daemon thread, one call at a time, when :meth:`submit` asks."""

    def __init__(self, flush: Callable[[], None], name: str = "jobs-acks") -> None:
        self._flush = flush
        self._name = name
        self._cond = threading.Condition()
        self._pending = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self) -> None:
        """Run ``flush`` on the helper thread, after the call in flight (if any) ends."""
        with self._cond:
            while self._pending:
                self._cond.wait()
            self._pending = True
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(target=quiet(self._loop), name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait(self) -> None:
        """Return once no call is in flight."""
        with self._cond:
            while self._pending:
                self._cond.wait()

    def close(self) -> None:
        """Wait for the call in flight, then end the thread (a later :meth:`submit` starts another)."""
        with self._cond:
            while self._pending:
                self._cond.wait()
            self._closed = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
            try:
                self._flush()
            except Exception:  # the thread must go on serving the next batch
                log.exception("acknowledging finished jobs raised")
            finally:
                with self._cond:
                    self._pending = False
                    self._cond.notify_all()
