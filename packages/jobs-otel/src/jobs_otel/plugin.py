"""The telemetry plugin: OpenTelemetry spans and metrics from the jobs hooks."""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jobs_core import hookimpl
from jobs_core.errors import Retry, SkipJob
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from jobs_otel.settings import TelemetrySettings

if TYPE_CHECKING:
    from jobs_core.driver import Driver
    from jobs_core.message import Message
    from jobs_core.records import QueueStats
    from jobs_core.run import JobRun
    from jobs_core.worker import Worker

log = logging.getLogger("jobs_otel")

#: The instrumentation scope of the spans and metrics.
SCOPE = "jobs_otel"

_NO_TRACING = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
try:  # the global provider before one is set: a proxy that records nothing
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    _NO_METRICS: tuple[type, ...] = (metrics.NoOpMeterProvider, _ProxyMeterProvider)
except ImportError:  # pragma: no cover - a later opentelemetry-api
    _NO_METRICS = (metrics.NoOpMeterProvider,)

#: The counters, by name (``jobs.<name>``), with their descriptions.
COUNTERS = {
    "enqueued": "Jobs stored by dispatch.",
    "started": "Job runs started by workers.",
    "succeeded": "Job runs that succeeded.",
    "failed": "Job runs that failed (raised or timed out).",
    "retried": "Failed jobs put back to run again.",
    "dead": "Jobs that went to the failed store.",
}

#: Bucket bounds, in seconds, of the ``jobs.duration`` histogram.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: Seconds after which the send span of a message never stored (a duplicate
#: unique key, a failed enqueue) is ended.
_UNSTORED_AFTER = 60.0


class TelemetryPlugin:
    """Spans for each enqueue and each run, and job metrics, on the jobs hooks.

    The installed package registers one instance (``jobs_otel.plugin``) in
    every app through the ``jobs.plugins`` entry point. It uses the global
    OpenTelemetry providers unless given ``tracer_provider`` or
    ``meter_provider``; with none configured, OpenTelemetry's no-op API makes
    it record nothing. ``settings`` default to the ``JOBS_METRICS_*``
    environment variables (:class:`~jobs_otel.settings.TelemetrySettings`).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        settings: TelemetrySettings | None = None,
    ) -> None:
        from jobs_otel import __version__

        self.settings = settings or TelemetrySettings.from_env()
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._counts = _Tallies()
        for name, description in COUNTERS.items():
            meter.create_observable_counter(
                f"jobs.{name}", [functools.partial(self._observe_count, name)], "{job}", description
            )
        self._duration = meter.create_histogram(
            "jobs.duration",
            "s",
            "Seconds each job run took, by outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        meter.create_observable_gauge(
            "jobs.queue.depth",
            [self._observe_depth],
            "{job}",
            "Jobs in each queue a worker serves, by state.",
        )
        meter.create_observable_gauge(
            "jobs.queue.lag", [self._observe_lag], "s", "How late the last job started from each queue was."
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: list[weakref.ref[Worker]] = []
        self._stats: dict[int, tuple[float, dict[str, QueueStats]]] = {}
        self._lag: dict[str, float] = {}
        #: The hooks around each job run, registered by ``jobs_worker_started`` when active.
        self._runs = _RunTelemetry(self)

    # -- dispatching process ------------------------------------------------

    def _pending(self) -> OrderedDict[str, tuple[trace.Span, float]]:
        pending: OrderedDict[str, tuple[trace.Span, float]] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = OrderedDict()
        return pending

    def _tracing(self) -> bool:
        """Whether spans go anywhere: a tracer provider other than OpenTelemetry's no-op one is set."""
        provider = self._tracer_provider or trace.get_tracer_provider()
        return not isinstance(provider, _NO_TRACING)

    def _measuring(self) -> bool:
        """Whether measurements go anywhere: a meter provider other than the no-op one is set."""
        provider = self._meter_provider or metrics.get_meter_provider()
        return not isinstance(provider, _NO_METRICS)

    @hookimpl
    def jobs_message_headers(self, message: Message, driver: Driver) -> Mapping[str, str] | None:
        """Start the message's send span and put its trace context in the headers."""
        if not self._tracing():
            return None
        span = self._tracer.start_span(
            f"send {message.name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "jobs",
                "messaging.operation.type": "send",
                "messaging.destination.name": message.queue,
                "messaging.message.id": message.id,
                "jobs.job.name": message.name,
                "jobs.driver": driver.name,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if span.is_recording():
            now = time.monotonic()
            pending = self._pending()
            while pending:
                oldest, (old_span, since) = next(iter(pending.items()))
                if now - since < _UNSTORED_AFTER:
                    break
                del pending[oldest]
                old_span.set_attribute("jobs.stored", False)
                old_span.end()
            pending[message.id] = (span, now)
        return carrier or None

    @hookimpl
    def jobs_job_queued(self, message: Message) -> None:
        """Count the stored job and end its send span."""
        self._counts.add(("enqueued", message.queue, message.name))
        pending: OrderedDict[str, tuple[trace.Span, float]] | None = getattr(self._local, "pending", None)
        if pending:
            entry = pending.pop(message.id, None)
            if entry is not None:
                entry[0].set_attribute("jobs.stored", True)
                entry[0].end()

    # -- worker process -----------------------------------------------------

    def active(self) -> bool:
        """Whether anything is recorded: a tracer or meter provider is set, or ``JOBS_METRICS_PORT``."""
        return self.settings.metrics_port is not None or self._tracing() or self._measuring()

    @hookimpl
    def jobs_worker_started(self, worker: Worker) -> None:
        """When telemetry is configured: hook the job runs, watch the queues, serve Prometheus if asked.

        Unconfigured (no provider, no ``JOBS_METRICS_PORT``), the worker's job
        runs are left alone: no run wrapper, no per-job hook, and ``async``
        jobs stay on the worker's event loop.
        """
        if not self.active():
            return
        manager = worker.app.plugin_manager
        if not manager.is_registered(self._runs):
            manager.register(self._runs, name=f"{SCOPE}:runs:{id(self)}")
        with self._lock:
            self._workers = [ref for ref in self._workers if ref() is not None]
            self._workers.append(weakref.ref(worker))
        if self.settings.metrics_port is not None:
            from jobs_otel.prometheus import start_metrics_server

            start_metrics_server(self.settings.metrics_port, self.settings.metrics_addr)

    # -- gauges ---------------------------------------------------------------

    def _queue_stats(self) -> dict[str, QueueStats]:
        """Counts of the queues the live workers serve, read at most once per ``stats_interval``."""
        with self._lock:
            workers = [w for w in (ref() for ref in self._workers) if w is not None]
        found: dict[str, QueueStats] = {}
        now = time.monotonic()
        for worker in workers:
            driver = worker.driver
            cached = self._stats.get(id(driver))
            if cached is None or now - cached[0] >= self.settings.stats_interval:
                try:
                    cached = (now, driver.stats_by_queue(list(worker.queues)))
                except Exception as exc:
                    log.warning("jobs_otel: reading queue stats failed: %s: %s", type(exc).__name__, exc)
                    continue
                self._stats[id(driver)] = cached
            found.update({q: s for q, s in cached[1].items() if q in worker.queues})
        return found

    def _observe_count(self, name: str, options: CallbackOptions) -> Iterable[Observation]:
        for key, count in self._counts.totals(name).items():
            attributes: dict[str, str | bool] = {"queue": key[1], "job": key[2]}
            if name == "failed":
                attributes["will_retry"] = key[3]
            yield Observation(count, attributes)

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        for queue, stats in self._queue_stats().items():
            for state in ("pending", "delayed", "reserved", "failed"):
                yield Observation(getattr(stats, state), {"queue": queue, "state": state})

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        for queue, lag in list(self._lag.items()):
            yield Observation(lag, {"queue": queue})


class _RunTelemetry:
    """The hooks of a worker's job runs: counts, lag, a consumer span and the duration of each run.

    Registered in an app by :meth:`TelemetryPlugin.jobs_worker_started` only
    when telemetry is configured, so that an installed but unconfigured
    package adds nothing to a job's run.
    """

    def __init__(self, telemetry: TelemetryPlugin) -> None:
        self.telemetry = telemetry

    @hookimpl
    def jobs_job_processing(self, message: Message) -> None:
        """Count the run and note how late it started."""
        self.telemetry._counts.add(("started", message.queue, message.name))
        self.telemetry._lag[message.queue] = max(0.0, time.time() - message.available_at)

    @hookimpl(wrapper=True)
    def jobs_run_job(self, run: JobRun) -> Generator[None, Any, Any]:
        """Run the job inside a consumer span, child of the dispatcher's send span."""
        message = run.message
        if not self.telemetry._tracing():
            started = time.perf_counter()
            outcome = "failed"
            try:
                result = yield
                outcome = "succeeded"
                return result
            except SkipJob:
                outcome = "skipped"
                raise
            except Retry:
                outcome = "retry"
                raise
            finally:
                if self.telemetry._measuring():
                    elapsed = time.perf_counter() - started
                    attributes = {"queue": message.queue, "job": message.name, "outcome": outcome}
                    self.telemetry._duration.record(elapsed, attributes)
        parent = propagate.extract(message.headers) if message.headers else None
        span = self.telemetry._tracer.start_span(
            f"process {message.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "jobs",
                "messaging.destination.name": message.queue,
                "messaging.message.id": message.id,
                "jobs.job.name": message.name,
                "jobs.attempt": run.attempt,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        outcome = "succeeded"
        started = time.perf_counter()
        try:
            return (yield)
        except SkipJob:
            outcome = "skipped"
            span.set_attribute("jobs.outcome", outcome)
            raise
        except BaseException as exc:
            outcome = "retry" if isinstance(exc, Retry) else "failed"
            span.set_attribute("jobs.outcome", outcome)
            _record_failure(span, exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            otel_context.detach(token)
            span.end()
            if self.telemetry._measuring():
                attributes = {"queue": message.queue, "job": message.name, "outcome": outcome}
                self.telemetry._duration.record(elapsed, attributes)

    @hookimpl
    def jobs_job_processed(self, message: Message) -> None:
        """Count the success."""
        self.telemetry._counts.add(("succeeded", message.queue, message.name))

    @hookimpl
    def jobs_job_failed(self, message: Message, will_retry: bool) -> None:
        """Count the failed attempt."""
        self.telemetry._counts.add(("failed", message.queue, message.name, will_retry))

    @hookimpl
    def jobs_job_retrying(self, message: Message) -> None:
        """Count the retry."""
        self.telemetry._counts.add(("retried", message.queue, message.name))

    @hookimpl
    def jobs_job_dead(self, message: Message) -> None:
        """Count the job sent to the failed store."""
        self.telemetry._counts.add(("dead", message.queue, message.name))


def _record_failure(span: trace.Span, exc: BaseException) -> None:
    """Mark ``span`` failed with ``exc``; an exception that cannot be shown as text is named only."""
    try:
        description = f"{type(exc).__name__}: {exc}"
        span.record_exception(exc)
    except Exception:
        description = f"{type(exc).__name__}: <unprintable>"
    span.set_status(Status(StatusCode.ERROR, description))


class _Tallies:
    """Counts kept per thread, with plain dict updates, and summed when metrics are read.

    A job event costs a dictionary update instead of an OpenTelemetry
    measurement; the observable counters report the sums.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[dict[tuple[Any, ...], int]] = []

    def add(self, key: tuple[Any, ...]) -> None:
        """Count one ``key``: ``(counter name, queue, job name, ...)``."""
        try:
            counts: dict[tuple[Any, ...], int] = self._local.counts
        except AttributeError:
            counts = self._local.counts = {}
            with self._lock:
                self._all.append(counts)
        counts[key] = counts.get(key, 0) + 1

    def totals(self, name: str) -> dict[tuple[Any, ...], int]:
        """The sums, over every thread, of the keys of counter ``name``."""
        with self._lock:
            every = list(self._all)
        totals: dict[tuple[Any, ...], int] = {}
        for counts in every:
            for key, count in counts.copy().items():
                if key[0] == name:
                    totals[key] = totals.get(key, 0) + count
        return totals
