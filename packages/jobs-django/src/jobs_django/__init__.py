"""jobs-django: Django's Tasks framework on jobs workers.

Add ``"jobs_django"`` to ``INSTALLED_APPS`` and make it the tasks backend::

    TASKS = {"default": {"BACKEND": "jobs_django.JobsBackend"}}

then run ``python manage.py jobs_worker``. See ``docs/guide/django.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs_django.errors import (
    DjangoConfigurationError,
    DjangoIntegrationError,
    MalformedTaskPayload,
    TaskNotRegistered,
)

if TYPE_CHECKING:
    from jobs_django.backend import JobsBackend

__version__ = "0.1.0"

__all__ = [
    "DjangoConfigurationError",
    "DjangoIntegrationError",
    "JobsBackend",
    "MalformedTaskPayload",
    "TaskNotRegistered",
    "__version__",
    "connection",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the backend needs Django's settings, the app module must not.
    if name == "JobsBackend":
        from jobs_django.backend import JobsBackend

        return JobsBackend
    if name == "connection":
        from jobs_django.transaction import connection

        return connection
    raise AttributeError(f"module 'jobs_django' has no attribute {name!r}")
