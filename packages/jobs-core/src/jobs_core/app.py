"""The app object: one configuration, one plugin manager, one driver, one registry.

Nothing is global: a process may hold several apps (tests, multi-tenant
programs), each with its own backend, jobs and event listeners.
:class:`~jobs_core.facade.Jobs` is a facade over one default app.

Example::

    app = JobsApp("memory://")
    app.register(SendEmail)
    app.dispatch(SendEmail, {"to": "a@example.com"})
    app.work("default")
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from jobs_core.async_dispatch import enqueue_async, refuse_async_transaction
from jobs_core.config import JobsConfig
from jobs_core.driver import Capability, Driver
from jobs_core.errors import ConfigurationError
from jobs_core.events import Callback, EventEmitter
from jobs_core.inspection import AppInspection
from jobs_core.job import Job, JobFunction, JobLike, job_instance
from jobs_core.message import FailedJob, Message, validate_queue_name
from jobs_core.middleware import EXECUTION_PLUGIN_NAME, ExecutionPlugin
from jobs_core.plugins import DriverRegistry, create_plugin_manager
from jobs_core.queue import Queue
from jobs_core.registry import Registry
from jobs_core.scheduling import AppScheduling

if TYPE_CHECKING:
    from jobs_core.worker import Worker

log = logging.getLogger("jobs_core.app")

#: Entry-point group of plugins (events, middleware) loaded into every app.
PLUGIN_ENTRY_POINT_GROUP = "jobs.plugins"


class JobsApp(AppScheduling, AppInspection):
    """A jobs application: configuration, driver, registry and plugins.

    ``url`` and ``options`` are the configuration (see
    :mod:`jobs_core.config`): a URL such as ``sqlite:///jobs.db`` (first,
    or as ``url=``; not both), the dict
    form ``driver="kafka", brokers=..., group_id=...``, or nothing for
    ``$JOBS_URL`` or ``memory://``. The configuration is checked at once (a
    bad URL or unknown driver raises); the driver is built on first use.

    ``plugins`` are registered on the app's plugin manager; with
    ``load_plugins`` (the default) the entry points of the group
    ``jobs.plugins`` are loaded as well.

    Scheduling (``schedule_at``, ``schedule_every``, ``schedule_cron``, ...)
    comes from :class:`~jobs_core.scheduling.AppScheduling`; ``status``,
    ``result`` and ``cancel`` from :class:`~jobs_core.inspection.AppInspection`.
    """

    def __init__(
        self,
        url: str | dict[str, Any] | None = None,
        /,
        *,
        plugins: Iterable[object] = (),
        load_plugins: bool = True,
        **options: Any,
    ) -> None:
        self.plugin_manager: pluggy.PluginManager = create_plugin_manager()
        self.drivers = DriverRegistry(self.plugin_manager)
        self.registry = Registry()
        self.events = EventEmitter(self.plugin_manager)
        self.plugin_manager.register(ExecutionPlugin(), name=EXECUTION_PLUGIN_NAME)
        self._lock = threading.RLock()
        self._driver: Driver | None = None
        self._queue: Queue | None = None
        self.config = JobsConfig.parse(url, **options)
        if load_plugins:
            self._load_entry_point_plugins()
        for plugin in plugins:
            self.register_plugin(plugin)
        self.config.driver_class(self.drivers)

    # -- configuration ------------------------------------------------------

    def configure(self, url: str | dict[str, Any] | None = None, /, **options: Any) -> None:
        """Replace the configuration; the previous driver is closed.

        Raises :class:`~jobs_core.errors.ConfigurationError` (bad URL, unknown
        driver) and keeps the old configuration in that case.
        """
        config = JobsConfig.parse(url, **options)
        config.driver_class(self.drivers)
        with self._lock:
            old = self._driver
            self.config = config
            self._driver = None
            self._queue = None
        if old is not None:
            old.close()

    @property
    def driver(self) -> Driver:
        """The driver, built from the configuration on first use."""
        driver = self._driver
        if driver is None:
            with self._lock:
                driver = self._driver
                if driver is None:
                    driver = self._driver = self.config.create_driver(self.drivers)
        return driver

    @property
    def queue(self) -> Queue:
        """The :class:`~jobs_core.queue.Queue` over this app's driver."""
        queue = self._queue
        if queue is None or queue.driver is not self.driver:
            queue = self._queue = Queue(self.driver, self.events)
        return queue

    # -- jobs and plugins ---------------------------------------------------

    def register(self, target: type[Job] | JobFunction | Job) -> type[Job]:
        """Register a job class or ``@job`` function so workers of this app run it."""
        return self.registry.register(target)

    def register_module(self, module: ModuleType | str) -> list[str]:
        """Import ``module`` and register every job it defines; return their names."""
        return self.registry.register_module(module)

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object (event hooks, middleware, drivers)."""
        self.drivers.register_plugin(plugin, name=name)
        self.events.refresh()

    def unregister_plugin(self, plugin: object) -> None:
        """Remove a plugin registered with :meth:`register_plugin`."""
        self.plugin_manager.unregister(plugin)
        self.events.refresh()

    def listen(self, event: str, callback: Callback) -> None:
        """Call ``callback(JobEvent)`` on ``event`` (``job.queued``, ``job.processed``, ...).

        An unknown event name raises :class:`~jobs_core.errors.ConfigurationError`
        listing the valid ones. A callback that raises is logged and does
        not affect the job.
        """
        self.events.listen(event, callback)

    def _load_entry_point_plugins(self) -> None:
        for entry_point in metadata.entry_points(group=PLUGIN_ENTRY_POINT_GROUP):
            try:
                plugin = entry_point.load()
                self.register_plugin(plugin, name=f"{PLUGIN_ENTRY_POINT_GROUP}:{entry_point.name}")
            except Exception as exc:
                dist = entry_point.dist.name if entry_point.dist is not None else "unknown"
                log.error("jobs plugin %r from %r failed to load: %s", entry_point.name, dist, exc)

    # -- dispatch -----------------------------------------------------------

    def message_for(
        self,
        job: JobLike,
        payload: Any = None,
        queue: str | None = None,
        delay: float | None = None,
    ) -> Message:
        """The message a dispatch of ``job`` would store (nothing is stored).

        Settings come from the job class, then the fluent overrides of a job
        instance; explicit ``queue`` and ``delay`` arguments win over both.
        A job class or function dispatched here is registered on this app,
        so that ``work()`` in the same process can run it; a name (string)
        must already be registered.
        """
        return self._template(job).to_message(payload, queue=queue, delay=delay)

    def _template(self, job: JobLike) -> Job:
        """A job instance for ``job``; registers classes and functions so this app's workers run them."""
        if isinstance(job, str):
            return self.registry.get(job)()
        self.registry.register(job)
        return job_instance(job)

    def dispatch(
        self,
        job: JobLike,
        payload: Any = None,
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
        after: Sequence[str] | None = None,
    ) -> str | None:
        """Queue one job; return its id (``None`` if dropped as a unique duplicate).

        ``job`` is a Job class, a configured job instance, a ``@job``
        function or a registered name. A payload JSON cannot hold raises
        :class:`~jobs_core.errors.PayloadNotJSON` here, not in the worker.
        With ``transaction``, the job is stored inside the caller's open
        transaction (drivers with ``TRANSACTIONAL_ENQUEUE``). With ``after``
        (batch, chain or job ids; drivers with ``WORKFLOWS``), the job is
        enqueued once those succeeded (see :mod:`jobs_core.workflows`).
        """
        refuse_async_transaction(transaction, "dispatch")
        message = self.message_for(job, payload, queue, delay)
        if after is not None:
            if transaction is not None:
                raise ConfigurationError("dispatch() takes transaction= or after=, not both")
            from jobs_core.workflows import dispatch_after

            return dispatch_after(self, message, after)
        return self.queue.enqueue([message], transaction=transaction)[0]

    def dispatch_later(
        self, delay: float, job: JobLike, payload: Any = None, queue: str | None = None
    ) -> str | None:
        """Queue one job to run ``delay`` seconds from now; return its id."""
        return self.dispatch(job, payload, queue=queue, delay=delay)

    def dispatch_many(
        self,
        job: JobLike,
        payloads: Iterable[Any],
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
    ) -> list[str | None]:
        """Queue one job per payload in a single driver call; return the ids in order.

        Every payload is checked before anything is stored; on drivers with
        ``ATOMIC_BATCH`` the batch is all-or-nothing.
        """
        refuse_async_transaction(transaction, "dispatch_many")
        template = self._template(job)
        messages = template.to_messages(payloads, queue=queue, delay=delay)
        return self.queue.enqueue(messages, transaction=transaction)

    async def adispatch(
        self,
        job: JobLike,
        payload: Any = None,
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
    ) -> str | None:
        """:meth:`dispatch` for ``async`` code: the event loop is not blocked while the job is stored.

        Without ``transaction`` the driver call runs in a worker thread. With
        an async SQLAlchemy ``AsyncConnection`` or ``AsyncSession``, the job
        is stored in that object's open transaction (through its
        ``run_sync``), so it exists if and only if the caller commits; a
        sync ``Connection`` or ``Session`` is used as :meth:`dispatch` uses it.
        """
        message = self.message_for(job, payload, queue, delay)
        return (await enqueue_async(self.queue, [message], transaction))[0]

    async def adispatch_many(
        self,
        job: JobLike,
        payloads: Iterable[Any],
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
    ) -> list[str | None]:
        """:meth:`dispatch_many` for ``async`` code (see :meth:`adispatch`)."""
        template = self._template(job)
        messages = template.to_messages(payloads, queue=queue, delay=delay)
        return await enqueue_async(self.queue, messages, transaction)

    # -- inspection and administration ---------------------------------------

    def stats(self, queue: str | None = None) -> dict[str, int | None]:
        """``pending``, ``delayed``, ``reserved``, ``completed`` and ``failed`` counts.

        For one queue, or summed over every queue. ``completed`` is ``None``
        when the driver keeps no record of finished jobs.
        """
        return self.queue.stats(queue).to_dict()

    def failed_jobs(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs, newest first, each with ``id``, ``name``, ``queue``,
        ``payload``, ``attempts``, ``error`` and ``failed_at``.
        """
        return self.queue.failed(limit=limit, offset=offset, queue=queue)

    def retry(self, job_id: str) -> bool:
        """Put a failed job back on its queue with its attempts reset; whether it was found."""
        return self.queue.retry(job_id)

    def purge(self, queue: str) -> int:
        """Remove the waiting jobs of ``queue``; return how many."""
        return self.queue.purge(queue)

    def prune(self, older_than: float) -> int:
        """Remove finished and failed records older than ``older_than`` seconds; return how many."""
        return self.queue.prune(older_than)

    def pause_queue(self, queue: str) -> bool:
        """Stop every worker from starting jobs of ``queue`` (within a second); whether it was running.

        Running jobs finish; jobs a worker had reserved but not started go
        back to the queue. Needs a driver with
        :attr:`~jobs_core.driver.Capability.QUEUE_PAUSE`.
        """
        self.driver.require(Capability.QUEUE_PAUSE, "pausing a queue")
        return self.driver.pause_queue(validate_queue_name(queue))

    def resume_queue(self, queue: str) -> bool:
        """Let workers start jobs of ``queue`` again; whether it was paused."""
        self.driver.require(Capability.QUEUE_PAUSE, "resuming a queue")
        return self.driver.resume_queue(validate_queue_name(queue))

    def paused_queues(self) -> list[str]:
        """The paused queues, sorted."""
        self.driver.require(Capability.QUEUE_PAUSE, "listing paused queues")
        return self.driver.paused_queues()

    # -- working ------------------------------------------------------------

    def worker(self, queues: str | Sequence[str] = ("default",), **options: Any) -> Worker:
        """A :class:`~jobs_core.worker.Worker` for ``queues``; see its options."""
        from jobs_core.worker import Worker

        if isinstance(queues, str):
            queues = [queues]
        return Worker(self, queues, **options)

    def work(self, queue: str | Sequence[str] = "default", max_jobs: int | None = None) -> int:
        """Run jobs in the calling thread until ``max_jobs`` were handled or no job is due.

        Handled means run to an outcome: succeeded, skipped, retried or
        failed. Jobs delayed into the future are not waited for. Returns the
        number handled. Uses concurrency 1 and installs no signal handlers.
        """
        if max_jobs is not None and max_jobs < 0:
            raise ConfigurationError(f"max_jobs must be >= 0, got {max_jobs}")
        worker = self.worker(
            queue,
            max_jobs=max_jobs,
            stop_when_empty=True,
            install_signal_handlers=False,
        )
        return worker.run()

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Close the driver (if built). Safe to call twice; the app can be used again."""
        with self._lock:
            driver, self._driver, self._queue = self._driver, None, None
        if driver is not None:
            driver.close()

    def __enter__(self) -> JobsApp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<JobsApp {self.config.display_url} jobs={len(self.registry)}>"
