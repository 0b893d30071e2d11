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

import asyncio
import collections
import logging
import signal
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jobs_core.context import enter_job, leave_job
from jobs_core.errors import ConfigurationError, JobNotRegistered, JobsError, Retry, SkipJob
from jobs_core.executor import Executor, bind_executor, describe_error, is_async_job
from jobs_core.heartbeat import Heartbeat
from jobs_core.job import Job
from jobs_core.message import Delivery, Message, validate_queue_name
from jobs_core.middleware import has_middleware
from jobs_core.run import JobRun

if TYPE_CHECKING:
    from jobs_core.app import JobsApp

log = logging.getLogger("jobs_core.worker")

_PROCESSING = "jobs_job_processing"
_PROCESSED = "jobs_job_processed"
_FAILED = "jobs_job_failed"
_RETRYING = "jobs_job_retrying"
_DEAD = "jobs_job_dead"

#: Acknowledgements wait at most this long (seconds) before they are flushed (by default).
ACK_FLUSH_INTERVAL = 0.05
#: Largest default prefetch window of a pooled worker (at least ``4 * concurrency``).
POOLED_PREFETCH = 200
#: Seconds of work the adaptive prefetch window of a pooled worker aims to hold.
PREFETCH_SECONDS = 0.25
#: Default upper bound of deliveries reserved per round trip with concurrency 1.
DEFAULT_INLINE_PREFETCH = 100


@runtime_checkable
class Service(Protocol):
    """Something that runs beside a worker (a scheduler, a metrics exporter).

    ``start(stop_event)`` is called when the worker starts and must return
    promptly (start a thread); the service stops when ``stop_event`` is set;
    ``join(timeout)`` waits for it.
    """

    def start(self, stop_event: threading.Event) -> None:
        """Start running until ``stop_event`` is set."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the service to stop."""


class _ThreadService:
    """Runs a callable ``fn(stop_event)`` in a daemon thread."""

    def __init__(self, function: Callable[[threading.Event], object]) -> None:
        self.function = function
        self.thread: threading.Thread | None = None

    def start(self, stop_event: threading.Event) -> None:
        self.thread = threading.Thread(
            target=self.function, args=(stop_event,), name=f"jobs-service-{self.function!r}", daemon=True
        )
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


@dataclass(frozen=True)
class WorkerStats:
    """Counts since the worker started.

    ``processed``: succeeded (or skipped); ``retried``: failed attempts put
    back; ``failed``: jobs sent to the failed store; ``released``: deliveries
    given back unrun at shutdown; ``in_flight``: held right now.
    """

    processed: int
    retried: int
    failed: int
    released: int
    in_flight: int
    elapsed: float

    @property
    def handled(self) -> int:
        """Jobs run to an outcome: processed + retried + failed."""
        return self.processed + self.retried + self.failed


class _ForcedStop(BaseException):
    """Raised in the worker's thread by a second signal to stop an inline job."""


class Worker:
    """Runs the jobs of ``app`` from ``queues`` (served in the order given).

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
        Stop as soon as no job is due (instead of waiting for work).
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
    """

    def __init__(
        self,
        app: JobsApp,
        queues: Sequence[str] = ("default",),
        *,
        concurrency: int = 1,
        prefetch: int | None = None,
        lease: float = 30.0,
        grace: float = 30.0,
        max_jobs: int | None = None,
        stop_when_empty: bool = False,
        poll_interval: float = 1.0,
        empty_wait: float | None = None,
        ack_interval: float = ACK_FLUSH_INTERVAL,
        install_signal_handlers: bool = True,
        services: Sequence[Service | Callable[[threading.Event], object]] = (),
    ) -> None:
        if not queues:
            raise ConfigurationError("a worker needs at least one queue")
        self.queues = [validate_queue_name(q) for q in queues]
        _check_int("concurrency", concurrency, 1)
        if prefetch is not None:
            _check_int("prefetch", prefetch, 0)
        if max_jobs is not None:
            _check_int("max_jobs", max_jobs, 0)
        for what, value in (
            ("lease", lease),
            ("grace", grace),
            ("poll_interval", poll_interval),
            ("empty_wait", 0.0 if empty_wait is None else empty_wait),
            ("ack_interval", ack_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{what} must be a number of seconds >= 0, got {value!r}")
        if lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease!r}")
        self.app = app
        self.concurrency = concurrency
        self.prefetch = (
            prefetch
            if prefetch is not None
            else (DEFAULT_INLINE_PREFETCH if concurrency == 1 else max(4 * concurrency, POOLED_PREFETCH))
        )
        #: Whether the pooled prefetch window follows the pace of the jobs (no prefetch given).
        self._adaptive = prefetch is None and concurrency > 1
        self._window = concurrency * 4 if self._adaptive else self.prefetch
        self.ack_interval = float(ack_interval)
        self.lease = float(lease)
        self.grace = float(grace)
        self.max_jobs = max_jobs
        self.stop_when_empty = stop_when_empty
        self.poll_interval = float(poll_interval)
        self.empty_wait = float(app.driver.reserve_settle_time if empty_wait is None else empty_wait)
        self.install_signal_handlers = install_signal_handlers
        self.services: list[Service] = [s if isinstance(s, Service) else _ThreadService(s) for s in services]

        self.driver = app.driver
        self.registry = app.registry
        self.events = app.events
        self.executor = Executor()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)  # the main loop waits here for room
        self._work = threading.Condition(self._lock)  # runner threads wait here for deliveries
        self._held: dict[str, Delivery] = {}
        self._released: set[str] = set()
        self._acks: list[Delivery] = []
        self._processed_events: list[tuple[Message, Any, float]] = []
        self._last_flush = time.monotonic()
        self._ack_thread: threading.Thread | None = None
        self._ready: collections.deque[Delivery] = collections.deque()
        self._async_ready: collections.deque[tuple[Delivery, Job]] = collections.deque()
        self._running: dict[str, Delivery] = {}
        self._threads: list[threading.Thread] = []
        self._idle_runners = 0
        self._reserver_waiting = False
        self._low_water = 1
        self._done_count = 0
        self._tick_seconds = 0.0
        self._paced_at = 0.0
        self._paced_count = 0
        self._reserved_total = 0
        self._processed = self._retried = self._failed = self._released_count = 0
        self._started = time.monotonic()
        self._stopping = False
        self._force = False
        self._stop_at = 0.0
        self._closing = False
        self._in_job = False
        self._signal_main = False
        self._refresh_hooks()

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
        )

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (signal or :meth:`stop`)."""
        return self._stopping

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
        for service in self.services:
            service.start(stop_services)
        try:
            if self.concurrency == 1:
                self._run_inline()
            else:
                self._run_pooled()
        finally:
            self._flush_acks_now()
            stop_services.set()
            for service in self.services:
                service.join(self.grace)
            heartbeat.stop()
            self.executor.close()
            restore_executor()
            restore_signals()
        return self.stats.handled

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
            log.warning(
                "received %s: stopped reserving; running jobs get %.0fs to finish (signal again to stop now)",
                signal.Signals(signum).name,
                self.grace,
            )
            return
        if not self._force:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
        self._force = True
        if self._in_job and self.concurrency == 1:
            raise _ForcedStop()

    # -- bookkeeping shared by both modes -------------------------------------

    def _refresh_hooks(self) -> None:
        events = self.events
        events.refresh()
        self._emit_processing = events.listens(_PROCESSING)
        self._emit_processed = events.listens(_PROCESSED)
        self._middleware = has_middleware(self.app.plugin_manager)

    def _held_now(self) -> list[Delivery]:
        with self._lock:
            return list(self._held.values())

    def _lost(self, delivery: Delivery) -> None:
        with self._lock:
            if self._held.pop(delivery.receipt, None) is None:
                return  # finished meanwhile: not a lost lease
        log.warning(
            "lease of job %s (%s) was lost; another worker may run it", delivery.id, delivery.message.name
        )

    def _take_ready(self) -> list[Delivery]:
        """Take every delivery not started yet (both kinds)."""
        with self._lock:
            waiting = list(self._ready)
            waiting += [delivery for delivery, _ in self._async_ready]
            self._ready.clear()
            self._async_ready.clear()
        return waiting

    def _tick(self) -> None:
        """Housekeeping, every heartbeat tick: late acks, prefetched jobs at a
        stop request, and the grace deadline.
        """
        # Flush one tick early, so that no finished job waits longer than ack_interval.
        if self._acks and time.monotonic() - self._last_flush >= self.ack_interval - self._tick_seconds:
            self._flush_acks()
        if self._stopping and (self._ready or self._async_ready):
            self._release(self._take_ready())
        if (
            self._stopping
            and self._in_job
            and self.concurrency == 1
            and self._signal_main
            and (self._force or time.monotonic() - self._stop_at >= self.grace)
        ):
            # An inline job outlived the grace period: interrupt the main thread.
            self._force = True
            main = threading.main_thread().ident
            if main is not None:
                signal.pthread_kill(main, signal.SIGINT)

    def _flush_acks(self) -> None:
        with self._lock:
            batch, self._acks = self._acks, []
            events, self._processed_events = self._processed_events, []
            self._last_flush = time.monotonic()
            for delivery in batch:
                self._held.pop(delivery.receipt, None)
        if not batch:
            return
        try:
            self.driver.ack_many(batch)
        except Exception as exc:
            log.error("could not acknowledge %d finished jobs (will try again): %s", len(batch), exc)
            with self._lock:
                self._acks[:0] = batch
                self._processed_events[:0] = events
                for delivery in batch:
                    self._held[delivery.receipt] = delivery
            return
        for message, result, duration in events:
            self.events.emit(_PROCESSED, message=message, result=result, duration=duration)

    def _flush_acks_behind(self) -> None:
        """Acknowledge the finished batch on a helper thread while this one reserves the next.

        The ack's round trip then overlaps the next claim and the jobs it
        brings. One flush is in flight at a time: the previous one is waited
        for first. Only for drivers that say it pays
        (:attr:`~jobs_core.driver.Driver.ack_in_background`); others ack here.
        """
        self._wait_for_acks()
        if not self._acks:
            return
        if not self.driver.ack_in_background:
            self._flush_acks()
            return
        thread = threading.Thread(target=self._flush_acks, name="jobs-acks", daemon=True)
        self._ack_thread = thread
        thread.start()

    def _wait_for_acks(self) -> None:
        thread, self._ack_thread = self._ack_thread, None
        if thread is not None:
            thread.join()

    def _flush_acks_now(self) -> None:
        """Wait for an ack in flight, then acknowledge whatever is left."""
        self._wait_for_acks()
        self._flush_acks()

    def _release(self, deliveries: Sequence[Delivery]) -> None:
        """Give deliveries back unrun, without counting an attempt."""
        for delivery in deliveries:
            with self._lock:
                if delivery.receipt in self._released or delivery.receipt not in self._held:
                    continue
                self._released.add(delivery.receipt)
                self._held.pop(delivery.receipt, None)
                self._released_count += 1
            try:
                self.driver.release(delivery)
            except Exception as exc:
                log.error("could not give back job %s (its lease will expire): %s", delivery.id, exc)

    def _reserve(self, limit: int) -> list[Delivery]:
        timeout = 0.0 if self.stop_when_empty else self.poll_interval
        try:
            deliveries = self.driver.reserve(self.queues, limit, self.lease, timeout)
            if not deliveries and self.stop_when_empty and self.empty_wait > 0:
                # Confirm the queue is empty: a broker may still be fetching records.
                deliveries = self.driver.reserve(self.queues, limit, self.lease, self.empty_wait)
        except JobsError as exc:
            if self.stop_when_empty or not exc.retryable:
                raise
            log.warning("reserving failed, trying again: %s", exc)
            self._sleep(min(5.0, max(0.5, self.poll_interval)))
            return []
        if deliveries:
            self._refresh_hooks()
            with self._lock:
                for delivery in deliveries:
                    self._held[delivery.receipt] = delivery
                self._reserved_total += len(deliveries)
        return deliveries

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    # -- running one job ----------------------------------------------------

    def _process(self, delivery: Delivery) -> None:
        """Run one delivery in this thread, to its outcome."""
        message = delivery.message
        try:
            cls = self.registry.get(message.name)
            job = cls()
        except JobNotRegistered as exc:
            self._dead(delivery, exc, f"JobNotRegistered: {exc}")
            return
        except Exception as exc:
            self._failure(delivery, exc)
            return
        if self._emit_processing:
            self.events.emit(_PROCESSING, message=message)
        started = time.perf_counter()
        entered = enter_job(job, message)
        try:
            self._in_job = True
            if self._middleware:
                result = self.app.plugin_manager.hook.jobs_run_job(
                    run=JobRun(message, job, message.payload, delivery)
                )
            elif message.timeout is None and not is_async_job(cls):
                result = job.handle(message.payload)
            else:
                result = self.executor.execute(JobRun(message, job, message.payload, delivery))
            self._in_job = False
        except _ForcedStop:
            self._in_job = False
            self._release([delivery])
            raise
        except KeyboardInterrupt:
            self._in_job = False
            self._release([delivery])
            raise
        except BaseException as exc:
            self._in_job = False
            self._failure(delivery, exc)
            return
        finally:
            leave_job(entered)
        self._success(delivery, result, time.perf_counter() - started)

    async def _run_async(self, delivery: Delivery, job: Job) -> None:
        """Run one ``async def`` job on the event loop (pooled workers), to its outcome.

        A failed attempt is settled on a helper thread (it makes a backend
        round trip), so the loop keeps running the other jobs meanwhile.
        """
        message = delivery.message
        enter_job(job, message)  # this task's own context: nothing to undo
        outcome: tuple[Any, float] | None = None
        try:
            if self._emit_processing:
                self.events.emit(_PROCESSING, message=message)
            started = time.perf_counter()
            try:
                if message.timeout is None:
                    result = await job.handle(message.payload)
                else:
                    result = await Executor.run_coroutine(JobRun(message, job, message.payload, delivery))
            except asyncio.CancelledError:
                self._release([delivery])
                return
            except BaseException as exc:
                await asyncio.get_running_loop().run_in_executor(None, self._failure, delivery, exc)
                return
            outcome = (result, time.perf_counter() - started)
        except Exception:
            log.exception("handling the outcome of job %s failed", delivery.id)
        finally:
            self._finished(delivery, on_loop=True, outcome=outcome)

    def _success(self, delivery: Delivery, result: Any, duration: float) -> None:
        with self._lock:
            if delivery.receipt in self._released:
                return
            self._acks.append(delivery)
            if self._emit_processed:
                self._processed_events.append((delivery.message, result, duration))
            self._processed += 1

    def _failure(self, delivery: Delivery, error: BaseException) -> None:
        """Retry or fail a delivery whose attempt failed; never raises.

        Whatever goes wrong while settling it (an event listener, an error
        that cannot be described) is logged, and the delivery still goes to
        the failed store, so no single job can stop the worker.
        """
        try:
            self._settle_failure(delivery, error)
        except Exception as trouble:
            log.exception(
                "settling the failed attempt of job %s failed; moving it to the failed store", delivery.id
            )
            with self._lock:
                if delivery.receipt not in self._held:
                    return  # already settled before the trouble
            self._dead(
                delivery, trouble, f"{type(error).__name__} (the failure could not be handled: {trouble!r})"
            )

    def _settle_failure(self, delivery: Delivery, error: BaseException) -> None:
        if isinstance(error, SkipJob):
            self._success(delivery, None, 0.0)
            return
        message = delivery.message
        with self._lock:
            if delivery.receipt in self._released:
                return
        summary, full = describe_error(error)
        if message.attempts >= message.max_retries:
            self._dead(delivery, error, full)
            return
        if isinstance(error, Retry) and error.delay is not None:
            delay = max(0.0, float(error.delay))
        else:
            delay = message.retry.delay_for(message.attempts + 1)
        try:
            self.driver.retry(delivery, delay, full)
        except JobsError as exc:
            if exc.retryable:  # the backend is away: the lease expires and the job comes back
                with self._lock:
                    self._held.pop(delivery.receipt, None)
                    self._retried += 1
                log.error(
                    "could not put job %s back for a retry (its lease will expire): %s", message.id, exc
                )
                return
            # The backend refuses the retried message for good (too large with its error text,
            # say): running it again would fail the same way forever, so it goes to the failed store.
            self._dead(delivery, error, f"{full}\n\n(could not be put back for a retry: {exc})")
            return
        except Exception as exc:
            log.error("could not put job %s back for a retry (its lease will expire): %s", message.id, exc)
        with self._lock:
            self._held.pop(delivery.receipt, None)
            self._retried += 1
        log.info("job %s %s failed (%s); retrying in %.1fs", message.name, message.id, summary, delay)
        self.events.emit(_FAILED, message=message, error=error, will_retry=True)
        self.events.emit(_RETRYING, message=message, delay=delay, error=error)

    def _dead(self, delivery: Delivery, error: BaseException, text: str) -> None:
        message = delivery.message
        with self._lock:
            self._held.pop(delivery.receipt, None)
            self._failed += 1
        try:
            self.driver.fail(delivery, text)
        except Exception as exc:
            log.error("could not move job %s to the failed store (lease will expire): %s", message.id, exc)
        log.warning("job %s %s failed for good: %s", message.name, message.id, text.split("\n", 1)[0])
        if isinstance(error, JobNotRegistered):
            self.events.emit(_DEAD, message=message, error=str(error))
            return
        self.events.emit(_FAILED, message=message, error=error, will_retry=False)
        self.events.emit(_DEAD, message=message, error=error)

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

    # -- concurrency > 1: a pool of threads and the event loop ----------------
    #
    # The worker's thread reserves batches and hands them out: sync jobs to
    # runner threads (started as they are needed, at most ``concurrency``),
    # ``async def`` jobs to the event loop, where each runs as a task. At most
    # ``concurrency`` jobs run at once, of both kinds together. Threads are
    # woken only when there is something for them: a runner when a delivery
    # waits and no runner is free, the reserving thread when the prefetch
    # window is at least half empty.

    def _has_room(self) -> bool:
        """Whether the reserving thread should reserve more (call holding the lock)."""
        queued = len(self._ready) + len(self._async_ready)
        free = self.concurrency + self._window - queued - len(self._running)
        return free > 0 and (queued == 0 or free >= self._low_water)

    def _adapt_window(self) -> None:
        """Size the prefetch window to about :data:`PREFETCH_SECONDS` of work at the recent pace."""
        now = time.monotonic()
        elapsed = now - self._paced_at
        if elapsed < 0.2:
            return
        done = self._done_count
        rate = (done - self._paced_count) / elapsed
        self._paced_at, self._paced_count = now, done
        self._window = max(self.concurrency, min(self.prefetch, int(rate * PREFETCH_SECONDS)))
        self._low_water = max(1, self._window // 2)

    def _run_pooled(self) -> None:
        # Reserve in batches: while deliveries are still waiting locally, wait
        # until at least half of the prefetch window is free.
        self._low_water = max(1, self._window // 2)
        self._paced_at, self._paced_count = time.monotonic(), 0
        try:
            while not self._stopping:
                if self._adaptive:
                    self._adapt_window()
                capacity = self.concurrency + self._window
                with self._cv:
                    while not self._stopping and not self._has_room():
                        self._reserver_waiting = True
                        self._cv.wait(self.poll_interval or 0.1)
                        self._reserver_waiting = False
                    queued = len(self._ready) + len(self._async_ready)
                    room = capacity - queued - len(self._running)
                    if self.max_jobs is not None:
                        room = min(room, self.max_jobs - self._reserved_total)
                    idle = not queued and not self._running
                if self.stopping:
                    break
                if room <= 0:
                    if idle:
                        break
                    with self._cv:
                        self._cv.wait(0.05)
                    continue
                deliveries = self._reserve(room)
                if deliveries:
                    self._hand_out(deliveries)
                elif self.stop_when_empty:
                    if idle:
                        break
                    with self._cv:
                        self._cv.wait(0.05)
        finally:
            self._drain()

    def _hand_out(self, deliveries: Sequence[Delivery]) -> None:
        """Queue reserved deliveries for the runner threads or the event loop."""
        threaded: list[Delivery] = []
        on_loop: list[tuple[Delivery, Job]] = []
        for delivery in deliveries:
            job = self._async_job(delivery)
            if job is None:
                threaded.append(delivery)
            else:
                on_loop.append((delivery, job))
        with self._cv:
            if threaded:
                self._ready.extend(threaded)
                wake = min(len(threaded), self._idle_runners)
                if wake:
                    self._work.notify(wake)
                missing = min(len(self._ready) - self._idle_runners, self.concurrency - len(self._threads))
                for _ in range(missing):
                    thread = threading.Thread(
                        target=self._runner, name=f"jobs-runner-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
            if on_loop:
                self._async_ready.extend(on_loop)
        if on_loop:
            self.executor.call_soon(self._start_async)

    def _async_job(self, delivery: Delivery) -> Job | None:
        """The job of ``delivery`` if it runs on the event loop, else ``None`` (a runner thread runs it)."""
        if self._middleware:
            return None  # middleware hooks are sync: the job runs through them on a thread
        try:
            cls = self.registry.get(delivery.message.name)
            if not is_async_job(cls):
                return None
            return cls()
        except Exception:
            return None  # a runner thread reports it (unregistered, cannot be built)

    def _start_async(self) -> None:
        """On the event loop: start waiting async jobs while fewer than ``concurrency`` run."""
        with self._lock:
            if self._stopping:
                return
            starting = self._next_async(self.concurrency - len(self._running))
        for delivery, job in starting:
            self.executor.spawn(self._run_async(delivery, job))

    def _next_async(self, free: int) -> list[tuple[Delivery, Job]]:
        """Take up to ``free`` waiting async jobs and count them as running (call holding the lock)."""
        starting = [self._async_ready.popleft() for _ in range(max(0, min(free, len(self._async_ready))))]
        for delivery, _ in starting:
            self._running[delivery.receipt] = delivery
        return starting

    def _runner(self) -> None:
        restore = bind_executor(self.executor)
        try:
            while True:
                with self._work:
                    while not self._closing and not (
                        self._ready and len(self._running) < self.concurrency and not self._stopping
                    ):
                        self._idle_runners += 1
                        self._work.wait(0.5)
                        self._idle_runners -= 1
                    if self._closing:
                        return
                    delivery = self._ready.popleft()
                    self._running[delivery.receipt] = delivery
                try:
                    self._process(delivery)
                except BaseException:
                    log.exception("worker thread failed while running job %s", delivery.id)
                self._finished(delivery, on_loop=False)
        finally:
            restore()

    def _finished(self, delivery: Delivery, on_loop: bool, outcome: tuple[Any, float] | None = None) -> None:
        """A job has run (in a runner thread, or on the loop): free its place, wake who can use it.

        ``outcome`` (result, duration) records a success in the same step (the loop's path).
        On the loop, the async jobs waiting for the place start here too.
        """
        start_async = False
        starting: list[tuple[Delivery, Job]] = []
        with self._cv:
            if outcome is not None and delivery.receipt not in self._released:
                self._acks.append(delivery)
                if self._emit_processed:
                    self._processed_events.append((delivery.message, *outcome))
                self._processed += 1
            self._running.pop(delivery.receipt, None)
            self._done_count += 1
            free = self.concurrency - len(self._running)
            if free > 0:
                if self._ready and self._idle_runners:
                    self._work.notify()
                if self._async_ready and not self._stopping:
                    if on_loop:
                        starting = self._next_async(free)
                    else:
                        start_async = True
            if self._reserver_waiting and self._has_room():
                self._cv.notify()
        for waiting, job in starting:
            self.executor.spawn(self._run_async(waiting, job))
        if start_async:
            self.executor.call_soon(self._start_async)

    def _drain(self) -> None:
        """Stop: give back what has not started, wait for running jobs up to the grace period."""
        waiting = self._take_ready()
        with self._cv:
            self._work.notify_all()
        self._release(waiting)
        deadline = (self._stop_at if self._stopping else time.monotonic()) + self.grace
        running: list[Delivery] = []
        while True:
            with self._cv:
                if not self._running:
                    break
                if self._force or time.monotonic() >= deadline:
                    running = list(self._running.values())
                    break
                self._cv.wait(0.1)
        if running:
            log.warning("giving back %d jobs still running after the grace period", len(running))
            self._release(running)
            self.executor.cancel_all()
        with self._cv:
            self._closing = True
            self._work.notify_all()
            self._cv.notify_all()


def _check_int(what: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an int >= {minimum}, got {value!r}")
