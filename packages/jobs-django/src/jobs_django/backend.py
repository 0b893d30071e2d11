"""``JobsBackend``: a backend of Django's Tasks framework that stores tasks as jobs.

::

    TASKS = {
        "default": {
            "BACKEND": "jobs_django.JobsBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"MAX_RETRIES": 2},  # see jobs_django.conf
        }
    }

``task.enqueue(...)`` stores a job that ``jobs worker`` (or ``python manage.py
jobs_worker``) runs; ``get_result(id)`` and ``TaskResult.refresh()`` read its
state and return value with ``Jobs.status``. A task's ``priority`` (-100 to
100, higher first) is the job's priority as it is; its ``queue_name`` the
job's queue; ``run_after`` the time the job becomes due.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from jobs_core import JobsApp
from jobs_core.driver import Capability
from jobs_core.errors import ConfigurationError, JobCancelled, JobFailed, JobNotFound
from jobs_core.status import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStatus

from jobs_django import compat, conf, transaction
from jobs_django.errors import TaskNotRegistered
from jobs_django.task_jobs import enqueue_time, error_of, job_class, note_task, payload_of, task_named


class JobsBackend(compat.BaseTaskBackend):  # type: ignore[misc]
    """Runs Django tasks on jobs workers; reads their results through ``Jobs.status``.

    ``app`` is the :class:`~jobs_core.JobsApp` the backend enqueues with
    (its driver is built on first use from ``URL``, or from the Django
    database ``DATABASE``); ``settings`` the checked ``OPTIONS``.
    """

    supports_defer = True
    supports_async_task = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._where = f"TASKS[{alias!r}]['OPTIONS']"
        self.settings = conf.load(self.options, where=self._where)  # bad settings fail here
        self._app: JobsApp | None = None

    @property
    def app(self) -> JobsApp:
        """The jobs app of this backend, for the settings as they are now.

        One app (one driver, one connection pool) serves every backend
        instance with the same settings: Django makes a backend per thread.
        The URL of the Django database is read again at each use, so that a
        test database (Django's test runner renames it once the tasks are
        defined) is the one used.
        """
        settings = conf.load(self.options, where=self._where)
        app = self._app
        if app is None or settings != self.settings:
            app = self._app = _shared_app(settings)
            self.settings = settings
        return app

    @property
    def supports_get_result(self) -> bool:
        """Whether results can be read back: the driver keeps job status (``Capability.STATUS``)."""
        return Capability.STATUS in self.app.driver.capabilities

    # -- enqueue -------------------------------------------------------------

    def validate_task(self, task: Any) -> None:
        """Django's checks, and a queue name jobs accepts; the task is then known to this process."""
        super().validate_task(task)
        try:
            job_class(task)
            from jobs_core import options

            options.queue("queue_name", task.queue_name)
        except ConfigurationError as exc:
            raise compat.InvalidTask(f"task {task.module_path}: {exc}") from exc
        note_task(task)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store a job for ``task(*args, **kwargs)``; return its ``TaskResult`` (``READY``).

        Inside ``transaction.atomic()`` on the jobs database (``DATABASE``,
        with ``TRANSACTIONAL``), the job is written in that transaction: it
        exists if and only if the transaction commits.
        """
        self.validate_task(task)
        payload = payload_of(args, kwargs)
        app = self.app
        template = (
            job_class(task)()
            .priority(task.priority)
            .retries(self.settings.max_retries)
            .timeout(self.settings.timeout)
        )
        delay = None
        if task.run_after is not None:
            delay = max(0.0, task.run_after.timestamp() - time.time())
        with self._transaction() as connection:
            job_id = app.dispatch(
                template, payload, queue=task.queue_name, delay=delay, transaction=connection
            )
        assert job_id is not None  # no unique key: never dropped
        result = compat.TaskResult(
            task=task,
            id=job_id,
            status=compat.TaskResultStatus.READY,
            enqueued_at=enqueue_time(job_id) or datetime.now(tz=timezone.utc),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=payload["args"],
            kwargs=payload["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        compat.signals.task_enqueued.send(type(self), task_result=result)
        return result

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        database = self.settings.database
        if self.settings.transactional and database is not None and transaction.in_atomic_block(database):
            with transaction.connection(database) as connection:
                yield connection
        else:
            yield None

    # -- results ---------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        """The ``TaskResult`` of the job ``result_id`` as it is now (``Jobs.status``).

        Queued and delayed jobs are ``READY``, running ones ``RUNNING``;
        succeeded ones ``SUCCESSFUL`` with their return value; failed and
        cancelled ones ``FAILED`` with the error. An unknown id (or a job
        finished longer ago than the driver keeps results) raises
        ``TaskResultDoesNotExist``; a job that is not a Django task known to
        this process raises :class:`~jobs_django.errors.TaskNotRegistered`.
        ``args`` and ``kwargs`` are the job's while the backend holds its
        payload (a waiting, running or failed task); a succeeded task's kept
        result holds only its return value, so they are empty there (the
        ``TaskResult`` that ``enqueue`` returned, and ``refresh()``, keep them).
        """
        try:
            status = self.app.status(result_id)
        except (JobNotFound, ConfigurationError):
            raise compat.TaskResultDoesNotExist(result_id) from None
        try:
            task = task_named(status.name)
        except TaskNotRegistered:
            from jobs_django.discovery import autodiscover

            autodiscover()  # the apps' tasks.py and jobs.py, as a worker does
            task = task_named(status.name)
        return result_from_status(task, status, self.alias)

    def wait(self, result_id: str, timeout: float | None = None) -> Any:
        """Wait for the task ``result_id`` to finish (``Jobs.result``); return its ``TaskResult``.

        Raises :class:`~jobs_core.errors.ResultTimeout` after ``timeout``
        seconds. A failed task's result is returned (``FAILED``), not raised.
        """
        try:
            self.app.result(result_id, timeout=timeout)
        except (JobFailed, JobCancelled):
            pass  # read below, as FAILED
        except (JobNotFound, ConfigurationError):
            raise compat.TaskResultDoesNotExist(result_id) from None
        return self.get_result(result_id)

    def close(self) -> None:
        """Close the driver's connections (the app opens new ones if used again)."""
        app = self._app
        if app is not None:
            app.close()


#: One app per distinct settings, shared by the backend instances of every thread.
_apps: dict[tuple[str, str], JobsApp] = {}
_apps_lock = threading.Lock()


def _shared_app(settings: conf.JobsSettings) -> JobsApp:
    key = (settings.url, repr(sorted(settings.driver_options.items())))
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            app = _apps[key] = JobsApp(settings.url, **settings.driver_options)
        return app


def result_from_status(task: Any, status: JobStatus, alias: str) -> Any:
    """A Django ``TaskResult`` for ``task`` from the jobs ``status`` of its job."""
    finished_at = (
        None if status.finished_at is None else datetime.fromtimestamp(status.finished_at, tz=timezone.utc)
    )
    errors = []
    if status.state == SUCCEEDED:
        state = compat.TaskResultStatus.SUCCESSFUL
    elif status.state == FAILED:
        state = compat.TaskResultStatus.FAILED
        errors.append(error_of(status.error or "Exception: the job failed"))
    elif status.state == CANCELLED:
        state = compat.TaskResultStatus.FAILED
        errors.append(error_of(f"jobs_core.errors.JobCancelled: job {status.id!r} was cancelled"))
    elif status.state == RUNNING:
        state = compat.TaskResultStatus.RUNNING
    else:
        state = compat.TaskResultStatus.READY
    attempts = status.attempts + (1 if status.state == RUNNING else 0)
    payload = status.payload if isinstance(status.payload, dict) else {}
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    result = compat.TaskResult(
        task=task,
        id=status.id,
        status=state,
        enqueued_at=enqueue_time(status.id),
        started_at=None,
        finished_at=finished_at,
        last_attempted_at=finished_at,
        args=args if isinstance(args, list) else [],
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        backend=alias,
        errors=errors,
        worker_ids=[status.worker or "jobs"] * attempts,
    )
    if status.state == SUCCEEDED:
        object.__setattr__(result, "_return_value", status.result)
    return result
