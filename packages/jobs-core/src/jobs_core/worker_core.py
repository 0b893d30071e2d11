"""The state of a worker and what it does with one delivery: reserve, run, settle.

:class:`WorkerCore` holds a worker's options and bookkeeping (held leases,
acknowledgements sent in batches, releases) and runs one delivery to its
outcome: success (acknowledged within ``ack_interval``), a retry, or the
failed store. :class:`~jobs_core.worker_pool.PooledWorker` adds running many
at once; :class:`~jobs_core.worker.Worker` adds the run loop and signals.
Over 400 lines: the settling of an outcome and the bookkeeping it updates
share one lock and one set of counters.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pluggy

from jobs_core.ack_thread import AckThread
from jobs_core.context import enter_job, leave_job
from jobs_core.driver import Capability, Driver
from jobs_core.errors import (
    ConfigurationError,
    JobNotRegistered,
    JobsError,
    Retry,
    SerializationError,
    SkipJob,
    WorkflowError,
)
from jobs_core.events import EventEmitter
from jobs_core.executor import Executor, describe_error, is_async_job
from jobs_core.flow import FlowGate, RateLimit, check_queue_order
from jobs_core.job import Job
from jobs_core.message import Delivery, Message, validate_queue_name
from jobs_core.middleware import has_middleware
from jobs_core.quiet_threads import quiet
from jobs_core.registry import Registry
from jobs_core.run import JobRun
from jobs_core.serializer import check_json, dumps
from jobs_core.tracking import RunTracker
from jobs_core.workflow_state import WANTS_RESULT_HEADER

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
#: Seconds without a finished job after which a pooled worker wakes another
#: runner for the jobs waiting (one runner may be kept busy by a long job).
STALLED_SECONDS = 0.02
#: Default upper bound of deliveries reserved per round trip with concurrency 1.
DEFAULT_INLINE_PREFETCH = 100
#: Longest wait, in seconds, of one :meth:`~jobs_core.driver.Driver.settled` call of a
#: worker told to stop when empty (it asks again until the driver has settled).
SETTLE_STEP = 1.0


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
            target=quiet(self.function),
            args=(stop_event,),
            name=f"jobs-service-{self.function!r}",
            daemon=True,
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
    #: Jobs found expired when reserved: acknowledged without running.
    expired: int = 0

    @property
    def handled(self) -> int:
        """Jobs run to an outcome: processed + retried + failed."""
        return self.processed + self.retried + self.failed


class _ForcedStop(BaseException):
    """Raised in the worker's thread by a second signal to stop an inline job."""


class WorkerApp(Protocol):
    """What a worker uses of its app (:class:`~jobs_core.app.JobsApp` is one)."""

    @property
    def driver(self) -> Driver:
        """The backend."""

    @property
    def registry(self) -> Registry:
        """The jobs this process can run."""

    @property
    def events(self) -> EventEmitter:
        """Event hooks."""

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """Middleware and plugins."""


class WorkerCore:
    """A worker's options, state and the settling of one delivery (see :class:`~jobs_core.worker.Worker`)."""

    def __init__(
        self,
        app: WorkerApp,
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
        queue_order: str | None = None,
        weights: Mapping[str, int] | None = None,
        queue_rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> None:
        if not queues:
            raise ConfigurationError("a worker needs at least one queue")
        self.queues = [validate_queue_name(q) for q in queues]
        self.queue_order = check_queue_order(queue_order, weights, self.queues)
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
        self._flow = FlowGate(
            self.driver,
            self.queues,
            self.queue_order,
            weights,
            lease=self.lease,
            queue_limits=queue_rate_limits,
        )
        #: Whether every job passes the flow gate: a queue rate limit applies to jobs
        #: without headers too; otherwise only a job carrying headers can hold a rate
        #: grant or a concurrency slot, and the others skip the gate's per-job calls.
        self._flow_all = bool(self._flow.queue_limits)
        self._expired = 0
        self._give_back_thread: threading.Thread | None = None
        self.registry = app.registry
        self.events = app.events
        self.executor = Executor()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)  # the main loop waits here for room
        self._work = threading.Condition(self._lock)  # runner threads wait here for deliveries
        self._held: dict[str, Delivery] = {}
        self._released: set[str] = set()
        self._acks: list[Delivery] = []
        #: Whether finished jobs' results go to the driver (``STATUS`` and a ``results_ttl``).
        self._keep_results = self.driver.supports(Capability.STATUS) and self.driver.results_ttl > 0
        self._results: dict[str, Any] = {}
        #: Progress reports and cancellations (drivers with ``PROGRESS`` or ``CANCEL``).
        self._tracker = RunTracker(self.driver, stop=self.executor.cancel_job)
        self._tracking = self._tracker.active
        # Held while a batch of acks is sent, so that waiting for the acks in flight
        # (_flush_acks_now) also waits for one sent by the heartbeat's tick.
        self._flushing = threading.Lock()
        self._processed_events: list[tuple[Message, Any, float]] = []
        self._last_flush = time.monotonic()
        self._ack_thread = AckThread(self._flush_acks)
        self._ready: collections.deque[Delivery] = collections.deque()
        self._async_ready: collections.deque[tuple[Delivery, Job]] = collections.deque()
        self._running: dict[str, Delivery] = {}
        self._threads: list[threading.Thread] = []
        self._idle_runners = 0
        self._reserver_waiting = False
        self._low_water = 1
        self._done_count = 0
        self._last_finish = 0.0
        #: How long recent sync jobs waited (see worker_pool): undecided until the first is
        #: measured (they go to runner threads; one that only computes tips the measure).
        self._blocked_seconds = 0.0001
        #: Whether runners take waiting jobs that only compute (the reserving thread is held up).
        self._rescuing = False
        self._last_wall = 1.0  # seconds the last sync job took (the next one is measured fully)
        #: Whether the thread that called run() is inside a job (a pooled worker's reserving thread).
        self._here = False
        #: Names of the registered sync jobs met so far (their deliveries go to threads).
        self._sync_names: set[str] = set()
        #: The job each lane of async jobs runs now (touched on the event loop's thread only).
        self._lanes: dict[asyncio.Task[Any], Delivery] = {}
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
        #: For :meth:`~jobs_core.worker.Worker.health`: when a reserve call last
        #: returned (monotonic, 0 before the first), whether it succeeded, and the
        #: last heartbeat tick.
        self._reserved_at = 0.0
        self._reserve_ok = False
        self._ticked_at = 0.0
        self._refresh_hooks()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (signal or :meth:`stop`)."""
        return self._stopping

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

    def _take_paused(self, paused: frozenset[str]) -> list[Delivery]:
        """Take the deliveries not started yet whose queue is now paused."""
        with self._lock:
            taken = [d for d in self._ready if d.message.queue in paused]
            taken += [d for d, _ in self._async_ready if d.message.queue in paused]
            if taken:
                self._ready = collections.deque(d for d in self._ready if d.message.queue not in paused)
                self._async_ready = collections.deque(
                    (d, j) for d, j in self._async_ready if d.message.queue not in paused
                )
        return taken

    def _tick(self) -> None:
        """Housekeeping, every heartbeat tick: late acks, prefetched jobs at a
        stop request, and the grace deadline.
        """
        self._ticked_at = time.monotonic()
        if self._tracking:
            self._tracker.tick(self._held_now)
        # Flush one tick early, so that no finished job waits longer than ack_interval.
        if self._acks and time.monotonic() - self._last_flush >= self.ack_interval - self._tick_seconds:
            self._flush_acks()
        elif self._flow.slots_ended:
            self._flow.free_ended()  # jobs that ended without an acknowledgement (a retry)
        if self._stopping and (self._ready or self._async_ready):
            self._release(self._take_ready())
        flow = self._flow
        if flow.refresh() and flow.paused:
            self._release(self._take_paused(flow.paused))
        flow.extend_slots()
        if self._ready and self._idle_runners and time.monotonic() - self._last_finish >= STALLED_SECONDS:
            # Jobs wait while every busy thread is in a long job: get a runner to them.
            with self._work:
                self._rescuing = True  # see worker_pool's _rescue
                self._work.notify()
        if (
            self._stopping
            and ((self._in_job and self.concurrency == 1) or self._here)
            and self._signal_main
            and (self._force or time.monotonic() - self._stop_at >= self.grace)
        ):
            # A job of the main thread outlived the grace period: interrupt it.
            self._force = True
            main = threading.main_thread().ident
            if main is not None:
                signal.pthread_kill(main, signal.SIGINT)

    def _flush_acks(self) -> None:
        with self._flushing:
            events = self._send_acks()
        for message, result, duration in events:
            self.events.emit(_PROCESSED, message=message, result=result, duration=duration)

    def _send_acks(self) -> list[tuple[Message, Any, float]]:
        """Acknowledge the finished jobs, and free the concurrency slots of those that ended;
        return their processed events (none if it failed).
        """
        with self._lock:
            batch, self._acks = self._acks, []
            events, self._processed_events = self._processed_events, []
            results = [self._results.pop(d.receipt, None) for d in batch] if self._keep_results else None
            self._last_flush = time.monotonic()
            for delivery in batch:
                self._held.pop(delivery.receipt, None)
        if not batch:
            self._flow.free_ended()
            return []
        ended = self._flow.take_ended()
        try:
            if ended:
                texts = None if results is None else [_result_text(result) for result in results]
                self.driver.ack_freeing_slots(batch, ended, texts)
            elif results is None:
                self.driver.ack_many(batch)
            else:
                self.driver.ack_results(batch, [_result_text(result) for result in results])
        except Exception as exc:
            log.error("could not acknowledge %d finished jobs (will try again): %s", len(batch), exc)
            self._flow.put_back_ended(ended)
            with self._lock:
                self._acks[:0] = batch
                if results is not None:
                    self._results.update((d.receipt, r) for d, r in zip(batch, results, strict=True))
                self._processed_events[:0] = events
                for delivery in batch:
                    self._held[delivery.receipt] = delivery
            return []
        return events

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
        self._ack_thread.submit()

    def _wait_for_acks(self) -> None:
        self._ack_thread.wait()

    def _flush_acks_now(self) -> None:
        """Wait for an ack in flight, then acknowledge whatever is left."""
        self._wait_for_give_back()
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
            self._flow.finished(delivery, at_once=True)
            try:
                self.driver.release(delivery)
            except Exception as exc:
                log.error("could not give back job %s (its lease will expire): %s", delivery.id, exc)

    def _reserve(self, limit: int) -> list[Delivery]:
        timeout = 0.0 if self.stop_when_empty else self.poll_interval
        try:
            queues = self._flow.queues()
            if time.monotonic() - self._flow.limited_seen < 1.0:
                limit = min(limit, self.concurrency)  # rate-limited jobs: only what starts at once
            if not queues:  # every queue is paused
                if not self.stop_when_empty:
                    self._sleep(min(self.poll_interval, 0.2) or 0.2)
                return []
            deliveries = self.driver.reserve(queues, limit, self.lease, timeout)
            if not deliveries and self.stop_when_empty:
                deliveries = self._confirm_empty(limit)
            while deliveries:
                admitted = self._admit(deliveries)
                queues = [q for q in queues if q not in self._flow.paused]
                if admitted or self._stopping or not queues:
                    deliveries = admitted
                    break
                # Everything reserved expired or must wait: look again at once.
                deliveries = self.driver.reserve(queues, limit, self.lease, 0.0)
        except JobsError as exc:
            self._reserved_at, self._reserve_ok = time.monotonic(), False
            if self.stop_when_empty or not exc.retryable:
                raise
            log.warning("reserving failed, trying again: %s", exc)
            self._sleep(min(5.0, max(0.5, self.poll_interval)))
            return []
        self._reserved_at, self._reserve_ok = time.monotonic(), True
        if deliveries:
            self._refresh_hooks()
            with self._lock:
                for delivery in deliveries:
                    self._held[delivery.receipt] = delivery
                self._reserved_total += len(deliveries)
        return deliveries

    def _admit(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Flow control: the deliveries to start; the rest are given back or expired."""
        start, later, expired = self._flow.admit(deliveries)
        if later:
            # Given back on a helper thread: the admitted jobs start meanwhile (a
            # rate-limited one has moments to start in).
            self._wait_for_give_back()
            self._give_back_thread = threading.Thread(
                target=quiet(self._give_back), args=(later,), name="jobs-give-back", daemon=True
            )
            self._give_back_thread.start()
        if expired:
            self.driver.ack_many(expired)
            with self._lock:
                self._expired += len(expired)
            for delivery in expired:
                log.info("job %s %s expired before it started; not run", delivery.message.name, delivery.id)
        return start

    def _give_back(self, later: Sequence[tuple[Delivery, float]]) -> None:
        for delivery, delay in later:
            try:
                self.driver.release(delivery, delay)
            except Exception as exc:
                log.error("could not give back job %s (its lease will expire): %s", delivery.id, exc)

    def _wait_for_give_back(self) -> None:
        thread, self._give_back_thread = self._give_back_thread, None
        if thread is not None:
            thread.join()

    def _confirm_empty(self, limit: int) -> list[Delivery]:
        """With ``stop_when_empty``, after an empty reserve: what is due after all, or nothing.

        Nothing is due only once the driver sees every message stored so far
        (:meth:`~jobs_core.driver.Driver.settled`: a broker's consumer group
        may still be joining, or fetching) and a reserve of ``empty_wait``
        seconds still finds nothing. Finished jobs are acknowledged first:
        an acknowledgement may store more work (the next link of a chain, a
        batch's callback).
        """
        self._flush_acks_now()
        while not self._stopping:
            settled = self.driver.settled(self.queues, SETTLE_STEP)
            wait = self.empty_wait if settled else 0.0
            deliveries = self.driver.reserve(self._flow.queues(), limit, self.lease, wait)
            if deliveries or settled:
                return deliveries
        return []

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    # -- running one job ----------------------------------------------------

    def _process(self, delivery: Delivery, measure: bool = False) -> tuple[float, float] | None:
        """Run one delivery in this thread, to its outcome.

        Returns how long the job's own code ran, as ``(wall, cpu)`` seconds
        (``cpu`` read only with ``measure``, else ``-1.0``), or ``None`` when it
        did not run. The worker's bookkeeping around it (locks shared with
        other threads, acknowledgements) is left out: a pooled worker decides
        from this whether jobs wait on anything (see ``worker_pool``).
        """
        message = delivery.message
        gated = self._flow_all or bool(message.headers)
        if gated and self._flow.may_start(delivery) is not None:
            self._late(delivery)
            return None
        try:
            cls = self.registry.get(message.name)
            job = cls()
        except JobNotRegistered as exc:
            self._dead(delivery, exc, f"JobNotRegistered: {exc}")
            return None
        except Exception as exc:
            self._failure(delivery, exc)
            return None
        if self._tracking and message.id in self._tracker.cancelled:
            self._finish_cancelled(delivery)  # cancelled before it started
            return None
        if self._emit_processing:
            self.events.emit(_PROCESSING, message=message)
        entered = enter_job(job, message)
        if self._tracking:
            self._tracker.start(job, delivery)
        cpu = time.thread_time() if measure else 0.0
        started = time.perf_counter()
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
            ran = time.perf_counter() - started
            spent = time.thread_time() - cpu if measure else -1.0
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
            ran = time.perf_counter() - started
            spent = time.thread_time() - cpu if measure else -1.0
            self._failure(delivery, exc)
            return ran, spent
        finally:
            leave_job(entered)
            if self._tracking:
                self._tracker.finish(message.id)
            if gated:
                self._flow.finished(delivery)
        self._success(delivery, result, ran)
        return ran, spent

    @staticmethod
    def _with_result(delivery: Delivery, result: Any) -> Delivery | WorkflowError:
        """The delivery to acknowledge, carrying ``result`` if its message asks for it
        (a chain link); the error to fail it with if JSON cannot hold ``result``.
        """
        headers = delivery.message.headers
        if not headers or result is None or WANTS_RESULT_HEADER not in headers:
            return delivery
        try:
            check_json(result, "$.result")
        except SerializationError as exc:
            return WorkflowError(f"the job's return value cannot be passed to the next link: {exc}")
        return dataclasses.replace(delivery, result=result)

    def _late(self, delivery: Delivery) -> None:
        """Give back a rate-limited job that missed the moment of its start, and found no other."""
        log.info("job %s %s missed its rate-limit start; put back", delivery.message.name, delivery.id)
        self._release([delivery])

    def _success(self, delivery: Delivery, result: Any, duration: float) -> None:
        if self._tracking and self._tracker.cancelled and delivery.id in self._tracker.cancelled:
            self._finish_cancelled(delivery)
            return
        if delivery.message.headers and result is not None:  # a chain link may want its result
            checked = self._with_result(delivery, result)
            if isinstance(checked, WorkflowError):
                self._failure(delivery, checked)
                return
            delivery = checked
        with self._lock:
            if delivery.receipt in self._released:
                return
            self._acks.append(delivery)
            if self._keep_results and result is not None:
                self._results[delivery.receipt] = result
            if self._emit_processed:
                self._processed_events.append((delivery.message, result, duration))
            self._processed += 1

    def _failure(self, delivery: Delivery, error: BaseException) -> None:
        """Retry or fail a delivery whose attempt failed; never raises.

        Whatever goes wrong while settling it (an event listener, an error
        that cannot be described) is logged, and the delivery still goes to
        the failed store, so no single job can stop the worker.
        """
        if self._tracking and delivery.id in self._tracker.cancelled:
            self._finish_cancelled(delivery)  # stopped by its cancellation: never retried
            return
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

    def _finish_cancelled(self, delivery: Delivery) -> None:
        """End a cancelled job: removed as cancelled, never retried (counted as processed)."""
        with self._lock:
            if delivery.receipt in self._released or self._held.pop(delivery.receipt, None) is None:
                return
            self._processed += 1
        try:
            self.driver.ack_cancelled(delivery)
        except Exception as exc:
            log.error("could not finish cancelled job %s (its lease will expire): %s", delivery.id, exc)
            return
        log.info("job %s %s cancelled", delivery.message.name, delivery.id)

    def _dead(self, delivery: Delivery, error: BaseException, text: str) -> None:
        message = delivery.message
        self._flow.finished(delivery, at_once=True)
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


def _result_text(result: Any) -> str | None:
    """The JSON text of a job's return value; ``None`` for ``None`` or a value JSON cannot hold."""
    if result is None:
        return None
    try:
        return dumps(result)
    except SerializationError:
        log.debug("the return value of a job is not JSON (%s): kept as null", type(result).__name__)
        return None


def _check_int(what: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an int >= {minimum}, got {value!r}")
