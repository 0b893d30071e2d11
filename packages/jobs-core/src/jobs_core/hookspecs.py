"""Hook specifications: how plugins extend jobs.

Plugins are modules or objects whose functions carry the :data:`hookimpl`
marker and are named after the hooks below. Driver packages are found through
the entry-point group ``jobs.drivers``; any object can also be registered on an
app with :meth:`jobs_core.app.JobsApp.register_plugin`.

Hooks evolve by gaining arguments only: an implementation may accept any
subset of a hook's arguments, so new ones never break old plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from jobs_core.driver import Driver
    from jobs_core.message import Message
    from jobs_core.run import JobRun
    from jobs_core.worker import Worker

PROJECT_NAME = "jobs"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marker for hook implementations: ``@hookimpl def jobs_register_drivers(register): ...``
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class DriverSpec:
    """The hooks through which plugins provide drivers and react to jobs.

    Every hook is prefixed ``jobs_``. Event hooks are called in the process
    where the event happens (the dispatcher for ``queued``, the worker for the
    rest), after the driver operation succeeded; an exception raised by an
    event hook is logged and does not affect the job.
    """

    @hookspec
    def jobs_register_drivers(self, register: Callable[[type[Driver]], None]) -> None:
        """Register the driver classes this plugin provides.

        :param register: call ``register(DriverClass)`` once per driver class.
            The class's ``name`` and ``schemes`` say which configurations it
            answers to. Registering a name already taken by another class
            raises :class:`~jobs_core.errors.DriverLoadError`.

        Called once, when the plugin is loaded: lazily, the first time a URL
        scheme or driver name that the plugin's entry point answers to is
        asked for, or when every driver is listed (``jobs drivers``).

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_message_headers(self, message: Message, driver: Driver) -> Mapping[str, str] | None:
        """Headers to add to a message before it is stored.

        :param message: the message about to be enqueued (dispatch, bulk
            dispatch, a schedule firing), its own headers included.
        :param driver: the driver it is about to be stored with.
        :returns: a mapping of strings to strings to add to the message's
            headers, or ``None`` to add nothing. A header the message
            already has is kept, never overwritten; the results of every
            implementation are merged.

        Called in the dispatching process, once per message, just before
        the driver's ``enqueue``; the worker sees the headers in
        ``message.headers`` (and ``current_job().headers``). Tracing plugins
        use it to carry a trace context from the dispatcher to the worker.
        An exception, or a value that is not a mapping of strings to
        strings, is logged and the message is stored without that
        implementation's headers. When no plugin implements it, dispatch
        does not call it at all.

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_worker_started(self, worker: Worker) -> None:
        """A worker started running (``Worker.run``, ``jobs worker``, ``Jobs.work``).

        :param worker: the :class:`~jobs_core.worker.Worker`; ``worker.app``,
            ``worker.driver`` and ``worker.queues`` say what it serves.

        Called once per ``run``, in the worker's process and thread, before
        it reserves its first job. Plugins use it to start per-process
        services (a metrics endpoint) or to watch the queues the worker
        serves. An exception is logged and the worker runs on.

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_job_queued(self, message: Message, driver: Driver) -> None:
        """A message was enqueued (event ``job.queued``).

        :param message: the message as stored.
        :param driver: the driver it was stored with.

        Called in the dispatching process after ``enqueue`` returned, once per
        message actually stored (not for unique-key duplicates).

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_job_processing(self, message: Message) -> None:
        """A worker is about to run a job (event ``job.processing``).

        Called in the worker before middleware and the job's ``handle``.

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_job_processed(self, message: Message, result: Any, duration: float) -> None:
        """A job finished successfully and was acknowledged (event ``job.processed``).

        :param result: what ``handle`` returned.
        :param duration: seconds spent running it.

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_job_failed(self, message: Message, error: BaseException, will_retry: bool) -> None:
        """An attempt failed (event ``job.failed``): it raised or timed out.

        :param error: the exception (a :class:`~jobs_core.errors.JobTimeout`
            for a timeout).
        :param will_retry: whether the job will be retried.

        Called before ``jobs_job_retrying`` or ``jobs_job_dead``.

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_job_retrying(self, message: Message, delay: float, error: BaseException) -> None:
        """A failed job was put back to run again after ``delay`` seconds
        (event ``job.retrying``).

        .. versionadded:: 0.1
        """

    @hookspec
    def jobs_job_dead(self, message: Message, error: BaseException | str) -> None:
        """A job used up its attempts, or could not be run at all (unknown
        name, malformed body), and went to the failed store (event ``job.dead``).

        .. versionadded:: 0.1
        """

    @hookspec(firstresult=True)
    def jobs_run_job(self, run: JobRun) -> Any:
        """Run one job; the middleware hook.

        :param run: the :class:`~jobs_core.run.JobRun` (message, job instance,
            payload, attempt). Middleware may change ``run.payload`` before
            the job runs.
        :returns: the job's result.

        The worker provides the innermost implementation, which calls the
        job's ``handle``. Middleware wraps it with a new-style wrapper::

            @hookimpl(wrapper=True)
            def jobs_run_job(run):
                started = time.monotonic()
                result = yield          # runs the job (and inner middleware)
                log(run.message.name, time.monotonic() - started)
                return result

        To skip a job, raise :class:`~jobs_core.errors.SkipJob` before
        yielding; to retry it, raise :class:`~jobs_core.errors.Retry`.
        Called in the worker, in the thread or event loop running the job.

        .. versionadded:: 0.1
        """
