"""Every error jobs-django raises: one base class, one module.

Each is also a :class:`jobs_core.errors.JobsError`, so code that handles the
errors of jobs handles these too.
"""

from __future__ import annotations

from jobs_core.errors import ConfigurationError, JobsError


class DjangoIntegrationError(JobsError):
    """Base class of the errors of the Django integration."""


class DjangoConfigurationError(DjangoIntegrationError, ConfigurationError):
    """The ``JOBS`` setting or a ``TASKS`` backend's ``OPTIONS`` are not valid.

    The message names the setting and the values it allows.
    """


class TaskNotRegistered(DjangoIntegrationError, LookupError):
    """A stored job names a Django task that this process does not know.

    A worker knows the tasks of the ``tasks.py`` and ``jobs.py`` modules of the
    installed apps and of the modules given with ``--import``; it never imports
    a module named in a stored job.
    """


class MalformedTaskPayload(DjangoIntegrationError, ValueError):
    """A stored job of a Django task does not hold ``{"args": [...], "kwargs": {...}}``."""
