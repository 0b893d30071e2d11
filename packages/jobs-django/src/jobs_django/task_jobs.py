"""Django tasks as jobs: one job class per task, known by the task's module path.

A ``@task`` function ``myapp.tasks.send_email`` is the job named
``myapp.tasks.send_email``; its payload is ``{"args": [...], "kwargs": {...}}``.
:class:`~jobs_django.backend.JobsBackend` notes every task it validates (Django
validates a task when ``@task`` creates it), so a process knows the tasks of
the modules it imported, and no others: a worker runs the tasks of the
modules it was told to import (the ``tasks.py`` and ``jobs.py`` of the
installed apps, and ``--import``), never a module named in a stored job.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
from datetime import datetime, timezone
from typing import Any, ClassVar

from jobs_core import Job, JobsApp
from jobs_core.context import job_context

from jobs_django import compat
from jobs_django.errors import MalformedTaskPayload, TaskNotRegistered

#: The tasks validated by a JobsBackend in this process, by module path.
_tasks: dict[str, Any] = {}
#: The job class of each task, by module path.
_classes: dict[str, type[TaskJob]] = {}
#: The worker apps that register the tasks noted from now on.
_worker_apps: list[JobsApp] = []
_lock = threading.Lock()


def note_task(task: Any) -> None:
    """Remember ``task`` (a Django ``Task``): this process may run and read it.

    In a worker (after :func:`register_tasks`), the task is registered on the
    worker's app too, so the tasks of the modules imported after the worker's
    set-up (``--import``) are run as well.
    """
    with _lock:
        _tasks[task.module_path] = task
        cls = _classes.get(task.module_path)
        if cls is not None:
            cls.django_task = task
        apps = list(_worker_apps)
    if apps:
        cls = _class_for(task)
        for app in apps:
            app.register(cls)


def known_tasks() -> dict[str, Any]:
    """The tasks noted in this process, by module path."""
    with _lock:
        return dict(_tasks)


def task_named(name: str) -> Any:
    """The noted task whose module path is ``name``; :class:`TaskNotRegistered` if none."""
    task = _tasks.get(name)
    if task is None:
        raise TaskNotRegistered(
            f"{name!r} is not a Django task known to this process: the tasks known are those of the "
            "tasks.py and jobs.py modules of the installed apps and of the modules imported so far"
        )
    return task


def job_class(task: Any) -> type[TaskJob]:
    """The job class that runs ``task`` (made once per module path); the task is noted.

    Its retries and time limit are set per enqueue, from the settings of the
    backend that enqueues (a task may be enqueued through several).
    """
    note_task(task)
    return _class_for(task)


def _class_for(task: Any) -> type[TaskJob]:
    name = task.module_path
    with _lock:
        cls = _classes.get(name)
        if cls is None:
            parent = AsyncTaskJob if inspect.iscoroutinefunction(task.func) else TaskJob
            cls = type(
                f"TaskJob[{name}]",
                (parent,),
                {
                    "__module__": __name__,
                    "__qualname__": f"TaskJob[{name}]",
                    "job_name": name,
                    "queue": task.queue_name,
                    "django_task": task,
                },
            )
            _classes[name] = cls
    return cls


def register_tasks(app: JobsApp) -> list[str]:
    """Register every task noted in this process on ``app``, and those noted later; return the names."""
    with _lock:
        if app not in _worker_apps:
            _worker_apps.append(app)
    names = []
    for name, task in sorted(known_tasks().items()):
        app.register(_class_for(task))
        names.append(name)
    return names


def payload_of(args: Any, kwargs: Any) -> dict[str, Any]:
    """The payload of one enqueue: the arguments as JSON (Django's own normalisation)."""
    return {"args": compat.normalize_json(list(args)), "kwargs": compat.normalize_json(dict(kwargs))}


def enqueue_time(job_id: str) -> datetime | None:
    """When the job ``job_id`` was enqueued: its id holds the millisecond (UUIDv7 layout)."""
    try:
        millis = int(job_id[:12], 16)
    except ValueError:
        return None
    if len(job_id) != 32 or job_id[12] != "7":
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


class TaskJob(Job):
    """Runs one Django task: its function with the payload's ``args`` and ``kwargs``.

    Django's database connections are closed when they are too old or broken,
    before and after each run (as Django does around a request). The task's
    return value goes through Django's JSON normalisation: a value JSON cannot
    hold fails the task. Django's ``task_started`` and ``task_finished``
    signals are sent.
    """

    django_task: ClassVar[Any]
    max_retries: ClassVar[int] = 0

    def handle(self, payload: Any) -> Any:
        """Run the task's function."""
        task = type(self).django_task
        args, kwargs = _arguments(payload, task)
        result = _running_result(self, task, args, kwargs)
        _before()
        try:
            if task.takes_context:
                value = task.func(compat.TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.func(*args, **kwargs)
            if inspect.isawaitable(value):  # a sync function that returned a coroutine
                raise TypeError(f"task {task.module_path} returned an awaitable; make it 'async def'")
            return _finished(result, value)
        except BaseException as exc:
            _failed(result, exc)
            raise
        finally:
            _after()


class AsyncTaskJob(TaskJob):
    """Runs one ``async def`` Django task on the worker's event loop."""

    async def handle(self, payload: Any) -> Any:
        """Await the task's coroutine function."""
        task = type(self).django_task
        args, kwargs = _arguments(payload, task)
        result = _running_result(self, task, args, kwargs)
        try:
            if task.takes_context:
                value = await task.func(compat.TaskContext(task_result=result), *args, **kwargs)
            else:
                value = await task.func(*args, **kwargs)
            return _finished(result, value)
        except BaseException as exc:
            _failed(result, exc)
            raise


def _arguments(payload: Any, task: Any) -> tuple[list[Any], dict[str, Any]]:
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("args", []), list)
        or not isinstance(payload.get("kwargs", {}), dict)
        or set(payload) - {"args", "kwargs"}
    ):
        raise MalformedTaskPayload(
            f"a job of the Django task {task.module_path} must hold "
            f'{{"args": [...], "kwargs": {{...}}}}, got {str(payload)[:200]}'
        )
    return list(payload.get("args", [])), dict(payload.get("kwargs", {}))


#: The worker id reported to Django (``TaskResult.worker_ids``).
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"


def _running_result(job: Job, task: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    context = job_context(job)
    now = datetime.now(tz=timezone.utc)
    result = compat.TaskResult(
        task=task,
        id=context.id,
        status=compat.TaskResultStatus.RUNNING,
        enqueued_at=enqueue_time(context.id),
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=[WORKER_ID] * context.attempt,
    )
    compat.signals.task_started.send(sender=_backend_class(task), task_result=result)
    return result


def _finished(result: Any, value: Any) -> Any:
    value = compat.normalize_json(value)
    object.__setattr__(result, "_return_value", value)
    object.__setattr__(result, "status", compat.TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", datetime.now(tz=timezone.utc))
    compat.signals.task_finished.send(sender=_backend_class(result.task), task_result=result)
    return value


def _failed(result: Any, exc: BaseException) -> None:
    if result.status != compat.TaskResultStatus.RUNNING:
        return  # task_finished was sent already
    object.__setattr__(result, "status", compat.TaskResultStatus.FAILED)
    object.__setattr__(result, "finished_at", datetime.now(tz=timezone.utc))
    result.errors.append(error_of(f"{_type_path(type(exc))}: {exc}", exc))
    compat.signals.task_finished.send(sender=_backend_class(result.task), task_result=result)


def error_of(text: str, exc: BaseException | None = None) -> Any:
    """A Django ``TaskError`` from a jobs error text (``"module.Type: message..."``)."""
    head = text.split("\n", 1)[0]
    path = head.split(":", 1)[0].strip() if ":" in head else ""
    if exc is not None:
        path = _type_path(type(exc))
    elif not path or " " in path:
        path = "Exception"
    if "." not in path:
        path = f"builtins.{path}"
    return compat.TaskError(exception_class_path=path, traceback=text)


def _type_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend_class(task: Any) -> type:
    try:
        return type(compat.task_backends()[task.backend])
    except Exception:
        return TaskJob


def _before() -> None:
    from django.db import reset_queries

    reset_queries()
    _close_old_connections()


def _after() -> None:
    _close_old_connections()


def _close_old_connections() -> None:
    """Django's ``close_old_connections``, leaving alone a connection inside ``atomic()``.

    A task run in a test's own thread (``app.work()`` inside a test's
    transaction) must not end that transaction.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
