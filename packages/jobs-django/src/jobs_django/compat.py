"""Django's Tasks framework: ``django.tasks`` (Django 6.0 and later) or the ``django-tasks`` backport.

Both spell the same API; this module imports whichever is installed,
``django.tasks`` first, and names the few things that differ between them
(the invalid-task error is ``InvalidTask`` in Django, ``InvalidTaskError`` in
the backport).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


def _framework() -> tuple[str, ModuleType]:
    try:
        return "django.tasks", importlib.import_module("django.tasks")
    except ImportError:
        pass
    try:
        return "django_tasks", importlib.import_module("django_tasks")
    except ImportError as exc:
        raise ImportError(
            "jobs-django needs Django's Tasks framework: Django 6.0 or later, or the "
            f"django-tasks backport on older Django ('pip install django-tasks'): {exc}"
        ) from exc


#: ``"django.tasks"`` or ``"django_tasks"``: where the framework was found.
FRAMEWORK, tasks = _framework()
base: Any = importlib.import_module(f"{FRAMEWORK}.base")
backends_base: Any = importlib.import_module(f"{FRAMEWORK}.backends.base")
exceptions: Any = importlib.import_module(f"{FRAMEWORK}.exceptions")
signals: Any = importlib.import_module(f"{FRAMEWORK}.signals")

#: The framework's backend base class.
BaseTaskBackend: Any = backends_base.BaseTaskBackend
Task: Any = base.Task
TaskResult: Any = base.TaskResult
TaskResultStatus: Any = base.TaskResultStatus
TaskContext: Any = base.TaskContext
TaskError: Any = base.TaskError
TaskResultDoesNotExist: Any = exceptions.TaskResultDoesNotExist
#: Raised by ``validate_task`` for a task the backend cannot run.
InvalidTask: Any = getattr(exceptions, "InvalidTask", None) or exceptions.InvalidTaskError
MIN_PRIORITY: int = base.TASK_MIN_PRIORITY
MAX_PRIORITY: int = base.TASK_MAX_PRIORITY


def task_backends() -> Any:
    """The framework's handler of the ``TASKS`` setting (``task_backends[alias]``)."""
    return tasks.task_backends


def normalize_json(value: Any) -> Any:
    """Django's normalisation of task arguments and return values to JSON types."""
    for module in (f"{FRAMEWORK}.utils", "django.utils.json"):
        try:
            function = getattr(importlib.import_module(module), "normalize_json", None)
        except ImportError:
            continue
        if function is not None:
            return function(value)
    raise ImportError(f"{FRAMEWORK} has no normalize_json")  # pragma: no cover
