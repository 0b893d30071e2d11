"""Progress reports and cancellations of the jobs one worker runs.

A job reports progress with ``self.progress(done, total, note)``: the report
is only kept in memory (the latest one per job wins), and the worker's
heartbeat thread writes what changed at most every :data:`PROGRESS_INTERVAL`
seconds (``Driver.save_progress``), so a job that reports in a tight loop
costs a dict assignment per report. The same thread asks the driver about
every :data:`CANCEL_INTERVAL` seconds which of the held jobs were cancelled
(``Driver.cancel_requested``); a cancelled job sees ``self.cancelled`` become
true (``self.check_cancelled()`` raises
:class:`~jobs_core.errors.JobCancelled`), an ``async`` job is cancelled, and a
sync job running in a child process (one with a timeout) is killed. The
worker then finishes it as cancelled (``Driver.ack_cancelled``), never
retried.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from jobs_core.context import CURRENT_TRACKER
from jobs_core.driver import Capability, Driver
from jobs_core.message import Delivery
from jobs_core.status import Progress

log = logging.getLogger("jobs_core.worker")

#: Seconds between two progress writes of one worker (what changed meanwhile is coalesced).
PROGRESS_INTERVAL = 0.5
#: Seconds a job runs before its worker is recorded even if it reports no progress.
WORKER_AFTER = 1.0
#: Seconds between two looks for cancellation requests.
CANCEL_INTERVAL = 0.5

#: The attribute of a job instance that holds its worker's tracker.
TRACKER_ATTRIBUTE = "_jobs_tracker"


def worker_name() -> str:
    """``host:pid``, how status shows which worker runs a job."""
    return f"{os.uname().nodename if hasattr(os, 'uname') else 'localhost'}:{os.getpid()}"


class RunTracker:
    """The progress and cancellation bookkeeping of one worker (thread-safe)."""

    def __init__(
        self, driver: Driver, name: str | None = None, stop: Callable[[str], object] | None = None
    ) -> None:
        self.driver = driver
        #: Stops the run of a job by id, for jobs started without a ``stop`` of their own.
        self.stop = stop
        self.name = name or worker_name()
        self.progress_on = driver.supports(Capability.PROGRESS)
        self.cancel_on = driver.supports(Capability.CANCEL)
        self._lock = threading.Lock()
        self._reports: dict[str, tuple[float, float | None, str, float]] = {}
        self._started: dict[str, tuple[float, Delivery]] = {}
        self._named: set[str] = set()
        self._stoppers: dict[str, Callable[[], object]] = {}
        #: Ids of the held jobs whose cancellation was requested.
        self.cancelled: set[str] = set()
        self._progress_at = 0.0
        self._cancel_at = 0.0

    @property
    def active(self) -> bool:
        """Whether the driver has anything to track (``PROGRESS`` or ``CANCEL``)."""
        return self.progress_on or self.cancel_on

    # -- called by the worker and by jobs --------------------------------------

    def start(self, job: object, delivery: Delivery, stop: Callable[[], object] | None = None) -> None:
        """A job starts: it may now report progress; ``stop`` stops it if it is cancelled.

        Called for every job, so it takes no lock (each step is one atomic dict operation).
        """
        setattr(job, TRACKER_ATTRIBUTE, self)
        if CURRENT_TRACKER.get() is not self:
            CURRENT_TRACKER.set(self)
        self._started[delivery.id] = (time.monotonic(), delivery)
        if stop is not None:
            self._stoppers[delivery.id] = stop

    def finish(self, job_id: str) -> None:
        """The run of ``job_id`` is over (its outcome is settled next)."""
        self._started.pop(job_id, None)
        if self._stoppers:
            self._stoppers.pop(job_id, None)

    def report(self, job_id: str, report: tuple[float, float | None, str, float]) -> None:
        """Keep ``(done, total, note, time)`` as the latest report of ``job_id`` (written later)."""
        if self.progress_on:
            self._reports[job_id] = report

    def is_cancelled(self, job_id: str) -> bool:
        """Whether the cancellation of ``job_id`` was requested."""
        return job_id in self.cancelled

    # -- called by the heartbeat thread ------------------------------------------

    def tick(self, held: Callable[[], Sequence[Delivery]]) -> None:
        """Write what changed, and look for cancellations, when their time has come."""
        now = time.monotonic()
        if now - self._progress_at >= PROGRESS_INTERVAL:
            self._progress_at = now
            self._write_progress(held(), now)
        if self.cancel_on and now - self._cancel_at >= CANCEL_INTERVAL:
            self._cancel_at = now
            self._look_for_cancellations(held())

    def _write_progress(self, held: Sequence[Delivery], now: float) -> None:
        with self._lock:
            started_now = dict(self._started)
            if self.cancelled or self._named:
                ids = {d.id for d in held}
                self.cancelled &= ids  # finished ones are forgotten
                self._named &= started_now.keys()
            reports, self._reports = self._reports, {}
            due: list[tuple[Delivery, Progress | None]] = []
            if self.progress_on:
                for ident, (started, delivery) in started_now.items():
                    report = reports.get(ident)
                    if report is not None or (ident not in self._named and now - started >= WORKER_AFTER):
                        due.append((delivery, None if report is None else _progress(report)))
                        self._named.add(ident)
        for delivery, progress in due:
            try:
                self.driver.save_progress(delivery, progress, self.name)
            except Exception as exc:
                log.warning("could not save the progress of job %s: %s", delivery.id, exc)

    def _look_for_cancellations(self, held: Sequence[Delivery]) -> None:
        if not held:
            return
        try:
            found = self.driver.cancel_requested(held)
        except Exception as exc:
            log.warning("could not read cancellation requests: %s", exc)
            return
        with self._lock:
            new = found - self.cancelled
            self.cancelled |= found
        for ident in new:
            log.info("job %s was cancelled; stopping it", ident)
            stop = self._stoppers.get(ident)
            try:
                if stop is not None:
                    stop()
                elif self.stop is not None and ident in self._started:
                    self.stop(ident)
            except Exception as exc:
                log.warning("could not stop cancelled job %s: %s", ident, exc)


def _progress(report: tuple[float, float | None, str, float]) -> Progress:
    done, total, note, at = report
    return Progress(float(done), None if total is None else float(total), note[:1000], at)
