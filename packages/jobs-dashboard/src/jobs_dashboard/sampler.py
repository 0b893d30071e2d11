"""The throughput sampler: reads every queue's counts at a fixed interval and keeps the latest.

Throughput is worked out in the dashboard's process from two reads in a row:
jobs that finished (completed plus failed) per minute, where the driver
counts completed jobs (:attr:`~jobs_core.driver.Capability.COMPLETED_COUNT`);
the jobs waiting (pending plus delayed) are charted for every driver with
:attr:`~jobs_core.driver.Capability.STATS`. Nothing is written to the
backend: a restarted dashboard starts a new chart.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jobs_core.message import QueueStats

log = logging.getLogger("jobs_dashboard.sampler")


@dataclass(frozen=True)
class Sample:
    """One read of every queue's counts, at ``at`` (seconds since the epoch)."""

    at: float
    queues: Mapping[str, QueueStats]


@dataclass(frozen=True)
class Point:
    """One point of a chart: a time and a value (``None`` where the driver does not count it)."""

    at: float
    value: float | None


def _finished(stats: QueueStats) -> int | None:
    return None if stats.completed is None else stats.completed + stats.failed


def _waiting(stats: QueueStats) -> float:
    return float(stats.pending + stats.delayed)


class Sampler:
    """Keeps the latest ``keep`` reads of ``read()`` (a snapshot of every queue's counts).

    :meth:`start` runs :meth:`sample` every ``interval`` seconds in a daemon
    thread until :meth:`stop`; :meth:`sample` may also be called directly.
    A read that fails is logged and kept as :attr:`last_error` (shown on the
    page); the earlier samples stay.
    """

    def __init__(
        self,
        read: Callable[[], Mapping[str, QueueStats]],
        interval: float = 5.0,
        keep: int = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self.interval = interval
        self._clock = clock
        self._samples: collections.deque[Sample] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The text of the latest failed read, ``None`` once a read succeeds.
        self.last_error: str | None = None

    def sample(self) -> Sample | None:
        """Read the counts now and keep them; ``None`` if the read failed."""
        try:
            queues = dict(self._read())
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not read the queue counts: %s", self.last_error)
            return None
        taken = Sample(self._clock(), queues)
        with self._lock:
            self._samples.append(taken)
        self.last_error = None
        return taken

    def samples(self) -> list[Sample]:
        """The kept samples, oldest first."""
        with self._lock:
            return list(self._samples)

    def throughput(self, queue: str | None = None) -> list[Point]:
        """Finished jobs per minute between consecutive samples, of ``queue`` or of all queues.

        A point is ``None`` where the driver keeps no completed count; a count
        that went down (pruned records, retried failures) gives 0, not a
        negative rate.
        """
        samples = self.samples()
        points: list[Point] = []
        for before, after in itertools.pairwise(samples):
            elapsed = after.at - before.at
            old, new = self._total(before, queue, _finished), self._total(after, queue, _finished)
            if old is None or new is None or elapsed <= 0:
                points.append(Point(after.at, None))
            else:
                points.append(Point(after.at, max(0.0, new - old) * 60.0 / elapsed))
        return points

    def rate(self, queue: str | None = None, window: float = 60.0) -> float | None:
        """Finished jobs per minute over the last ``window`` seconds of samples (or all of them, if fewer).

        ``None`` with fewer than two samples or where the driver keeps no
        completed count.
        """
        samples = self.samples()
        if len(samples) < 2:
            return None
        last = samples[-1]
        first = next((s for s in samples if last.at - s.at <= window), samples[0])
        if first is last:
            first = samples[-2]
        old, new = self._total(first, queue, _finished), self._total(last, queue, _finished)
        elapsed = last.at - first.at
        if old is None or new is None or elapsed <= 0:
            return None
        return max(0.0, new - old) * 60.0 / elapsed

    def waiting(self, queue: str | None = None) -> list[Point]:
        """Jobs waiting (pending and delayed) at each sample, of ``queue`` or of all queues."""
        return [Point(s.at, self._total(s, queue, _waiting)) for s in self.samples()]

    @staticmethod
    def _total(
        sample: Sample, queue: str | None, measure: Callable[[QueueStats], float | int | None]
    ) -> float | None:
        names = [queue] if queue is not None else list(sample.queues)
        total = 0.0
        for name in names:
            stats = sample.queues.get(name)
            if stats is None:
                continue
            value = measure(stats)
            if value is None:
                return None
            total += value
        return total

    def start(self) -> None:
        """Sample now, then every ``interval`` seconds in a daemon thread (once: later calls do nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="jobs-dashboard-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (safe to call twice)."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            thread.join(timeout=30)

    def _loop(self) -> None:
        self.sample()
        while not self._stop.wait(self.interval):
            self.sample()
