"""The worker: reserve, run, acknowledge, retry, fail, and shut down gracefully.

A :class:`Worker` serves the queues of one :class:`~jobs_core.app.JobsApp`:

* It reserves deliveries in batches (``prefetch``) and acknowledges finished
  ones in batches (``Driver.ack_many``).
* With ``concurrency=1`` jobs run inline in the worker's thread. With more,
  sync jobs run on that many threads and ``async def`` jobs on an event loop
  in its own thread, at most ``concurrency`` jobs at a time overall.
* A failed attempt is retried after the delay of the job's retry policy
  (:meth:`RetryPolicy.delay_for <jobs_core.message.RetryPolicy.delay_for>`,
  or the delay of a raised :class:`~jobs_core.errors.Retry`); after the last
  attempt the job goes to the failed store with the exception type, message
  and traceback. Timeouts are enforced by :mod:`jobs_core.executor`.
* A message naming a job this worker has not registered goes to the failed
  store with that reason; the worker goes on.
* One heartbeat thread renews the leases of every held delivery.
* On SIGTERM or SIGINT (or :meth:`Worker.stop`) it stops reserving, gives
  back prefetched deliveries at once, lets running jobs finish within
  ``grace`` seconds, then gives back the rest without counting an attempt.
  A second signal stops at once.
"""

from __future__ import annotations

import signal
import threading
import time
import types
from collections.abc import Callable

from jobs_core.driver import Capability
from jobs_core.executor import bind_executor
from jobs_core.heartbeat import Heartbeat
from jobs_core.worker_core import (
    ACK_FLUSH_INTERVAL,
    DEFAULT_INLINE_PREFETCH,
    POOLED_PREFETCH,
    PREFETCH_SECONDS,
    Service,
    WorkerApp,
    WorkerStats,
    _ForcedStop,
    log,
)
from jobs_core.worker_health import LIVENESS_WINDOW, WorkerHealth
from jobs_core.worker_pool import PooledWorker
from jobs_core.worker_records import WorkerBeacon

__all__ = [
    "ACK_FLUSH_INTERVAL",
    "DEFAULT_INLINE_PREFETCH",
    "POOLED_PREFETCH",
    "PREFETCH_SECONDS",
    "Service",
    "Worker",
    "WorkerApp",
    "WorkerStats",
]


class Worker(PooledWorker):
    """Runs the jobs of ``app`` from ``queues`` (see ``queue_order``).

    Options:

    ``concurrency``
        Jobs run at the same time (default 1: inline, no thread hop).
    ``prefetch``
        Deliveries held beyond the running ones. With concurrency 1 it is the
        largest batch reserved per round trip (default 100; the batch grows
        from 1 while jobs are fast and shrinks while they are slow). With
        more, deliveries are reserved in batches of at least half of it; by
        default it follows the pace of the jobs — about a quarter second of
        work, from ``concurrency`` up to ``max(4 * concurrency, 200)`` — so
        fast jobs are reserved in large batches and slow ones are not hoarded;
        a number given here is used as is.
    ``ack_interval``
        Longest time, in seconds, a finished job waits for its
        acknowledgement (default 0.05). Acknowledgements are sent in batches;
        a worker killed without warning runs again, elsewhere, only its
        running jobs and those finished within this interval.
    ``lease``
        Seconds each reservation lasts; renewed every ``lease / 3`` (30).
    ``grace``
        Seconds running jobs get to finish after a stop request (30).
    ``max_jobs``
        Stop after handling this many jobs.
    ``stop_when_empty``
        Stop as soon as no job is due (instead of waiting for work): once the
        driver sees every message stored so far
        (:meth:`~jobs_core.driver.Driver.settled`) and still reserves nothing.
    ``poll_interval``
        Longest wait for work per reserve call, in seconds (1).
    ``empty_wait``
        With ``stop_when_empty``: how long to wait for work, once nothing is
        due, before deciding the queues are empty (default: the driver's
        ``reserve_settle_time``, 0 for drivers whose reserve sees every
        stored message at once; a broker-backed driver may still be fetching).
    ``install_signal_handlers``
        Handle SIGTERM and SIGINT while running (only from the main thread).
    ``services``
        :class:`Service` objects or callables ``fn(stop_event)`` started
        with the worker and stopped with it.
    ``queue_order``
        How a worker serving several queues picks the queue it reserves from
        first: ``"round-robin"`` (the default: each reserve starts at the next
        queue, so a backlog on one queue delays a job on another by at most
        one batch), ``"weighted"`` (the default when ``weights`` are given:
        queue ``q`` goes first in ``weights[q] / sum(weights)`` of the
        reserves, by smooth weighted round-robin), or ``"strict"`` (always in
        the order given: a later queue waits until the earlier are empty).
        Queues paused with ``Jobs.pause_queue`` are left out within a second.
    ``weights``
        ``{queue: int >= 1}`` for ``"weighted"`` (a queue not named weighs 1).
    ``queue_rate_limits``
        ``{queue: RateLimit(count, per)}``: at most ``count`` jobs of the
        queue start per ``per`` seconds, counted in the backend under the key
        ``queue:<name>`` (give every worker of the queue the same limit). A
        job's own rate limit replaces its queue's.
    """

    _running_loop = False
    _ran = False
    _stop_signal = 0
    #: Seconds after a stop signal within which the same signal again is the same
    #: request, not "stop now" (0: never). A worker process of ``jobs worker
    #: --processes`` uses 1: a process manager that signals every process of the
    #: unit (systemd's default ``KillMode=control-group``) reaches it directly and
    #: through its supervisor, at once.
    same_signal_window = 0.0

    # -- public -------------------------------------------------------------

    @property
    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters."""
        return WorkerStats(
            processed=self._processed,
            retried=self._retried,
            failed=self._failed,
            released=self._released_count,
            in_flight=len(self._held),
            elapsed=time.monotonic() - self._started,
            expired=self._expired,
        )

    def health(self, window: float = LIVENESS_WINDOW) -> WorkerHealth:
        """Whether this worker is ready (serving its queues) and live (not stuck); thread-safe.

        Ready: :meth:`run` is running, not stopping, and its last reserve call
        succeeded. Live: its reserve loop returned from a reserve call within
        the last ``window`` seconds, or it holds running jobs and its heartbeat
        (which renews their leases) ticked within ``window`` seconds; also
        while it starts (``window`` seconds from :meth:`run`) and while it
        stops (the grace period bounds that). Not live means a process
        manager should kill and restart it; not ready only that it takes no
        work now (starting, stopping, or the backend refusing reserves).
        """
        now = time.monotonic()
        if not self._running_loop:
            return WorkerHealth(ready=False, live=not self._ran, reason="not running")
        if self._stopping:
            return WorkerHealth(ready=False, live=True, reason="stopping")
        if not self._reserved_at:
            live = now - self._started < window
            return WorkerHealth(ready=False, live=live, reason="connecting" if live else "no reserve yet")
        busy = bool(self._held) and now - self._ticked_at < window
        live = now - self._reserved_at < window or busy
        if not live:
            stuck = f"no progress for {now - self._reserved_at:.0f}s"
            return WorkerHealth(ready=False, live=False, reason=stuck)
        if not self._reserve_ok:
            return WorkerHealth(ready=False, live=True, reason="reserving fails")
        return WorkerHealth(ready=True, live=True, reason="serving")

    def stop(self, force: bool = False) -> None:
        """Ask the worker to stop (thread-safe); ``force`` skips the grace period."""
        if not self._stopping:
            self._stop_at = time.monotonic()
            self._stopping = True
        if force:
            self._force = True

    def run(self) -> int:
        """Run until stopped, ``max_jobs`` handled, or (with ``stop_when_empty``) no job is due.

        Returns the number of jobs handled (succeeded, skipped, retried or failed).
        """
        self._started = time.monotonic()
        self._running_loop = self._ran = True
        restore_signals = self._install_signals()
        restore_executor = bind_executor(self.executor)
        stop_services = threading.Event()
        self._tick_seconds = min(0.1, self.ack_interval / 2)
        heartbeat = Heartbeat(
            self.driver,
            self.lease,
            self._held_now,
            self._lost,
            self._tick,
            tick=self._tick_seconds,
        )
        heartbeat.start()
        services = [*self.services, *self._beacon()]
        for service in services:
            service.start(stop_services)
        try:
            self.app.plugin_manager.hook.jobs_worker_started(worker=self)
        except Exception:
            log.exception("a jobs_worker_started hook raised; the worker runs on")
        try:
            if self.concurrency == 1:
                self._run_inline()
            else:
                self._run_pooled()
        finally:
            self._flush_acks_now()
            self._ack_thread.close()
            stop_services.set()
            for service in services:
                service.join(self.grace)
            heartbeat.stop()
            self.executor.close()
            restore_executor()
            restore_signals()
            self._running_loop = False
        return self.stats.handled

    def _beacon(self) -> list[WorkerBeacon]:
        """The thread recording this worker in the backend, if the driver keeps such records."""
        if not self.driver.supports(Capability.WORKERS):
            return []
        return [
            WorkerBeacon(
                self.driver,
                self._tracker.name,
                self.queues,
                self.concurrency,
                lambda: (self._processed, self._failed),
            )
        ]

    # -- signals ------------------------------------------------------------

    def _install_signals(self) -> Callable[[], None]:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        self._signal_main = True

        def restore() -> None:
            self._signal_main = False
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        # Runs in the main thread between bytecodes: set flags only, take no locks.
        if not self._stopping:
            self._stop_at = time.monotonic()
            self._stopping = True
            self._stop_signal = signum
            log.warning(
                "received %s: stopped reserving; running jobs get %.0fs to finish (signal again to stop now)",
                signal.Signals(signum).name,
                self.grace,
            )
            return
        if (
            not self._force
            and signum == self._stop_signal
            and time.monotonic() - self._stop_at < self.same_signal_window
        ):
            return  # one stop request that reached this process twice (see same_signal_window)
        if not self._force:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
        self._force = True
        if (self._in_job and self.concurrency == 1) or self._here:
            raise _ForcedStop()

    # -- concurrency 1: inline ------------------------------------------------

    def _remaining(self) -> int | None:
        if self.max_jobs is None:
            return None
        return self.max_jobs - self.stats.handled

    def _run_inline(self) -> None:
        batch = 1
        while not self._stopping:
            limit = batch
            remaining = self._remaining()
            if remaining is not None:
                if remaining <= 0:
                    return
                limit = min(limit, remaining)
            deliveries = self._reserve(limit)
            if not deliveries:
                self._flush_acks_now()
                if self.stop_when_empty:
                    return
                continue
            started = time.monotonic()
            with self._lock:
                self._ready.extend(deliveries)
            try:
                while True:
                    with self._lock:
                        if not self._ready:
                            break
                        delivery = self._ready.popleft()
                    if self.stopping:
                        self._release([delivery, *self._take_ready()])
                        break
                    self._process(delivery)
                    if time.monotonic() - self._last_flush >= self.ack_interval:
                        self._flush_acks_behind()  # bounds what a crash would run again
            except (_ForcedStop, KeyboardInterrupt):
                self._release(self._take_ready())
                return
            self._flush_acks_behind()
            elapsed = time.monotonic() - started
            if elapsed < 0.2 and len(deliveries) == batch:
                batch = min(max(1, self.prefetch), batch * 2)
            elif elapsed > 1.0:
                batch = max(1, batch // 2)
