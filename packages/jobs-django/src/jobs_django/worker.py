"""The worker side: ``jobs worker --plugin jobs_django.worker:setup`` serves a Django project.

:func:`setup` is called with the worker's app before the worker starts. It
sets Django up (``DJANGO_SETTINGS_MODULE``), configures the app from the
settings when neither ``--url`` nor ``JOBS_URL`` named a backend, imports the
``tasks.py`` and ``jobs.py`` of the installed apps, and registers their jobs
and every Django task known to the process. ``python manage.py jobs_worker``
runs ``jobs worker`` with this plugin.
"""

from __future__ import annotations

import os
from typing import Any

from jobs_core import JobsApp
from jobs_core.config import DEFAULT_URL, ENV_URL

from jobs_django import conf
from jobs_django.discovery import autodiscover
from jobs_django.errors import DjangoConfigurationError
from jobs_django.task_jobs import register_tasks

#: Environment variable naming the ``TASKS`` alias a worker serves (``jobs_worker --backend``).
ENV_BACKEND = "JOBS_DJANGO_BACKEND"


def setup(app: JobsApp) -> None:
    """Prepare ``app`` to serve the Django project of ``DJANGO_SETTINGS_MODULE``."""
    before = app.config
    given = before.url != DEFAULT_URL or bool(os.environ.get(ENV_URL))
    _setup_django()  # the app's ready() may configure Jobs, whose default app is this one
    settings = backend_settings(os.environ.get(ENV_BACKEND))
    if given:
        if app.config != before:  # --url or JOBS_URL wins over the settings
            app.configure(before.url, **dict(before.options))
    elif app.config.url != settings.url:
        app.configure(settings.url, **settings.driver_options)
    for module in autodiscover():
        app.register_module(module)
    register_tasks(app)


def backend_settings(alias: str | None = None) -> conf.JobsSettings:
    """The settings of the ``TASKS`` backend ``alias`` (a ``JobsBackend``).

    Without an alias: the ``"default"`` backend if it is a ``JobsBackend``,
    else the first one that is, else the ``JOBS`` setting alone.
    """
    backends = jobs_backends()
    if alias is not None:
        if alias not in backends:
            raise DjangoConfigurationError(
                f"TASKS has no jobs_django.JobsBackend named {alias!r} "
                f"(those are: {', '.join(backends) or 'none'})"
            )
        return conf.load(backends[alias].get("OPTIONS"), where=f"TASKS[{alias!r}]['OPTIONS']")
    if backends:
        alias = "default" if "default" in backends else next(iter(backends))
        return conf.load(backends[alias].get("OPTIONS"), where=f"TASKS[{alias!r}]['OPTIONS']")
    return conf.load()


def backend_queues(alias: str | None = None) -> list[str]:
    """The ``QUEUES`` of the backend a worker serves (``[]`` when not restricted)."""
    backends = jobs_backends()
    if alias is None:
        alias = "default" if "default" in backends else next(iter(backends), None)
    if alias is None:
        return []
    return [str(queue) for queue in backends[alias].get("QUEUES", ["default"])]


def jobs_backends() -> dict[str, dict[str, Any]]:
    """The ``TASKS`` entries whose ``BACKEND`` is ``jobs_django.JobsBackend``, by alias."""
    from django.conf import settings

    tasks = getattr(settings, "TASKS", None) or {}
    return {
        alias: dict(params)
        for alias, params in tasks.items()
        if params.get("BACKEND") in ("jobs_django.JobsBackend", "jobs_django.backend.JobsBackend")
    }


def _setup_django() -> None:
    from django.apps import apps

    if apps.ready:
        return
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise DjangoConfigurationError(
            "jobs_django.worker:setup needs DJANGO_SETTINGS_MODULE (or run 'python manage.py jobs_worker')"
        )
    import django

    django.setup()
